// Package mirror writes containerd-format registry host configuration
// (<dir>/<registry-host>/hosts.toml) that sends pulls from upstream
// registries to the rig's local registry, where each upstream's repositories
// live under a path prefix named after the host.
package mirror

import (
	"fmt"
	"os"
	"path/filepath"
)

// upstreamServer is the real endpoint of a registry host, as containerd
// spells it; only docker.io differs from "https://<host>".
func upstreamServer(host string) string {
	if host == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + host
}

// HostsTOML renders the hosts.toml for one upstream host. override_path
// makes the client use the URL's path as the API root as is, so a pull of
// registry.k8s.io/pause:3.9 asks
// http://<addr>/v2/registry.k8s.io/pause/manifests/3.9.
func HostsTOML(host, addr string) string {
	return fmt.Sprintf(`server = %q

[host."http://%s/v2/%s"]
  capabilities = ["pull", "resolve"]
  override_path = true
`, upstreamServer(host), addr, host)
}

// Write creates dir/<host>/hosts.toml for every host, replacing old files.
func Write(dir, addr string, hosts []string) error {
	for _, h := range hosts {
		d := filepath.Join(dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("hosts dir for %s: %w", h, err)
		}
		// Write then rename, so a reader never sees half a file.
		tmp := filepath.Join(d, ".hosts.toml.tmp")
		if err := os.WriteFile(tmp, []byte(HostsTOML(h, addr)), 0o644); err != nil {
			return fmt.Errorf("write hosts.toml for %s: %w", h, err)
		}
		if err := os.Rename(tmp, filepath.Join(d, "hosts.toml")); err != nil {
			return fmt.Errorf("install hosts.toml for %s: %w", h, err)
		}
	}
	return nil
}
