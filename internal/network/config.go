package network

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/fsnotify/fsnotify"
)

// Reason reported by Ready when no usable network config exists; the
// kubelet shows it in the node's NetworkReady condition.
const reasonNotReady = "NetworkPluginNotReady"

// confExtensions are the file types libcni and the other CRI runtimes load
// from a CNI config dir.
var confExtensions = []string{".conflist", ".conf", ".json"}

// loaded is the outcome of one scan of the config dir.
type loaded struct {
	list *libcni.NetworkConfigList // nil when none is usable
	file string
	msg  string // why list is nil
}

// loadConfig picks the first loadable network config by file name, as
// containerd and CRI-O do, and checks that its plugins exist so that Ready
// does not report a network that every Setup would fail on.
func loadConfig(dir string, binDirs []string, log *slog.Logger) loaded {
	files, err := libcni.ConfFiles(dir, confExtensions)
	if err != nil {
		return loaded{msg: fmt.Sprintf("read CNI config dir %s: %v", dir, err)}
	}
	sort.Strings(files)
	var skipped []error
	for _, f := range files {
		list, err := loadFile(f)
		if err == nil {
			err = pluginsExist(list, binDirs)
		}
		if err != nil {
			log.Warn("skipping CNI config", "file", f, "err", err)
			skipped = append(skipped, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		return loaded{list: list, file: f}
	}
	if len(skipped) > 0 {
		return loaded{msg: fmt.Sprintf("no usable CNI config in %s: %v", dir, errors.Join(skipped...))}
	}
	return loaded{msg: fmt.Sprintf("cni plugin not initialized: no network config found in %s", dir)}
}

func loadFile(path string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		return libcni.NetworkConfFromFile(path)
	}
	// A .conf or .json file holds a single plugin; wrap it in a list so
	// the rest of the package handles one shape.
	conf, err := libcni.ConfFromFile(path) //nolint:staticcheck // still the way to read single-plugin files
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(conf) //nolint:staticcheck // as above
}

func pluginsExist(list *libcni.NetworkConfigList, binDirs []string) error {
	if len(list.Plugins) == 0 {
		return errors.New("no plugins")
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, binDirs); err != nil {
			return fmt.Errorf("plugin %q: %w", p.Network.Type, err)
		}
	}
	return nil
}

// watch marks the config stale on any change in dir. Reloading lazily on
// the next Ready or Setup keeps bursts of writes (an editor saving, an
// installer copying several files) to one reload.
func (m *Manager) watch() {
	defer close(m.watchDone)
	for {
		select {
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			if m.dirGone(ev) {
				m.watching.Store(false)
			}
			m.stale.Store(true)
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			// An overflowed queue may have dropped events.
			m.log.Warn("CNI config watch", "dir", m.cfg.ConfDir, "err", err)
			m.stale.Store(true)
		}
	}
}

// current returns the network config to use, reloading it if the dir
// changed since the last call.
func (m *Manager) current() loaded {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Without a working watch (the dir was removed and recreated, or
	// could not be watched) every call rescans: correct, just slower.
	if !m.watching.Load() {
		m.watching.Store(m.addWatch())
		m.stale.Store(true)
	}
	if m.stale.Swap(false) || !m.watching.Load() {
		prev := m.conf.file
		m.conf = loadConfig(m.cfg.ConfDir, m.cfg.BinDirs, m.log)
		if m.conf.file != prev {
			m.log.Info("CNI network config changed", "file", m.conf.file, "network", m.networkName(), "reason", m.conf.msg)
		}
	}
	return m.conf
}

func (m *Manager) networkName() string {
	if m.conf.list == nil {
		return ""
	}
	return m.conf.list.Name
}

func (m *Manager) addWatch() bool {
	if m.watcher == nil {
		return false
	}
	// crid writes nothing into the operator's CNI dir, not even the dir:
	// while it is missing, Ready rescans on each call (a failed stat).
	if _, err := os.Stat(m.cfg.ConfDir); err != nil {
		return false
	}
	// Removing a watched dir drops its watch; re-adding is a no-op when
	// the watch still exists.
	if err := m.watcher.Add(m.cfg.ConfDir); err != nil {
		return false
	}
	return true
}

// dirGone notices the watched dir itself going away, after which
// fsnotify delivers nothing more for it.
func (m *Manager) dirGone(ev fsnotify.Event) bool {
	return ev.Name == filepath.Clean(m.cfg.ConfDir) && ev.Has(fsnotify.Remove|fsnotify.Rename)
}
