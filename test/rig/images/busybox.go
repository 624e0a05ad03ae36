package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// libDirs are where the dynamic loader of Debian amd64 looks without an
// ld.so.cache, and where the rig looks for busybox's libraries on this host.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// imageLibDir is where libraries go inside the images.
const imageLibDir = "/lib/x86_64-linux-gnu"

// Busybox is Debian's dynamically linked busybox with what it needs to run.
// The dynamic build matters: busybox-static runs applets inside sh without
// exec'ing /bin/<applet>, which defeats critest's MaskedPaths spec.
type Busybox struct {
	Binary  []byte
	Applets []string          // names from "busybox --list"
	Interp  string            // PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
	Libs    map[string][]byte // soname -> file content, loader included
}

// LoadBusybox reads busybox from a Debian .deb (via dpkg-deb), or from this
// machine's /bin/busybox (package "busybox") when deb is empty.
func LoadBusybox(deb string) (*Busybox, error) {
	var bin []byte
	var err error
	if deb != "" {
		bin, err = busyboxFromDeb(deb)
	} else {
		bin, err = os.ReadFile("/bin/busybox")
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w (apt-get install busybox, or pass --busybox-deb)", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("load busybox: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("parse busybox ELF: %w", err)
	}
	defer f.Close()
	bb := &Busybox{Binary: bin, Libs: map[string][]byte{}}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("read busybox PT_INTERP: %w", err)
			}
			bb.Interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if bb.Interp == "" {
		return nil, fmt.Errorf("busybox is statically linked; the rig needs Debian's dynamic busybox package, not busybox-static")
	}
	if err := bb.addLibs(f); err != nil {
		return nil, err
	}
	interp, err := os.ReadFile(bb.Interp)
	if err != nil {
		return nil, fmt.Errorf("read dynamic loader: %w", err)
	}
	bb.Libs[path.Base(bb.Interp)] = interp
	if bb.Applets, err = applets(bin); err != nil {
		return nil, err
	}
	return bb, nil
}

// addLibs copies the DT_NEEDED closure from this host. The libraries are the
// host's, not the .deb's dependencies: tests only need them to match the
// loader, and they do since both come from here.
func (bb *Busybox) addLibs(f *elf.File) error {
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("busybox DT_NEEDED: %w", err)
	}
	for len(needed) > 0 {
		name := needed[0]
		needed = needed[1:]
		if _, done := bb.Libs[name]; done || name == path.Base(bb.Interp) {
			continue
		}
		data, err := findLib(name)
		if err != nil {
			return err
		}
		bb.Libs[name] = data
		lf, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("parse %s: %w", name, err)
		}
		more, err := lf.ImportedLibraries()
		lf.Close()
		if err != nil {
			return fmt.Errorf("%s DT_NEEDED: %w", name, err)
		}
		needed = append(needed, more...)
	}
	return nil
}

func findLib(name string) ([]byte, error) {
	for _, d := range libDirs {
		data, err := os.ReadFile(filepath.Join(d, name))
		if err == nil {
			return data, nil
		}
	}
	return nil, fmt.Errorf("library %s not found in %v", name, libDirs)
}

func busyboxFromDeb(deb string) ([]byte, error) {
	out, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", deb, err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s has no bin/busybox", deb)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", deb, err)
		}
		if clean(h.Name) == "bin/busybox" && h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// applets runs the binary (it is amd64 and its libraries are this host's) to
// ask which applets it has.
func applets(bin []byte) ([]string, error) {
	tmp, err := os.CreateTemp("", "rig-busybox-*")
	if err != nil {
		return nil, fmt.Errorf("temp busybox: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(bin)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("temp busybox: %w", err)
	}
	cmd := exec.Command(tmp.Name(), "--list")
	cmd.Args[0] = "busybox" // busybox dispatches on argv[0]
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	list := strings.Fields(string(out))
	sort.Strings(list)
	return list, nil
}

// RootFS lays out a busybox root like the official busybox image: every
// applet a hard link to /bin/busybox, and only in /bin. Hard links, not
// symlinks, because masking /bin/ls bind-mounts over the path, and a symlink
// would be followed to /bin/busybox and mask the shell too; only /bin, so
// that PATH lookup of "ls" cannot find an unmasked copy elsewhere.
func (bb *Busybox) RootFS() *FS {
	fs := NewFS()
	for _, d := range []string{"/bin", "/dev", "/etc", "/home", "/proc", "/sys", "/usr/bin", "/usr/sbin",
		"/usr/local/bin", "/var/spool/mail", "/var/www", "/var/run", imageLibDir} {
		fs.Dir(d, 0o755)
	}
	fs.Dir("/root", 0o700)
	fs.Dir("/tmp", 0o1777)
	fs.File("/bin/busybox", 0o755, bb.Binary)
	for _, a := range bb.Applets {
		if a != "busybox" {
			fs.Hardlink("/bin/"+a, "/bin/busybox")
		}
	}
	for name, data := range bb.Libs {
		fs.File(path.Join(imageLibDir, name), 0o755, data)
	}
	if bb.Interp != path.Join(imageLibDir, path.Base(bb.Interp)) {
		fs.Symlink(bb.Interp, path.Join(imageLibDir, path.Base(bb.Interp)))
	}
	fs.File("/etc/passwd", 0o644, []byte(passwd))
	fs.File("/etc/group", 0o644, []byte(group))
	fs.File("/etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"))
	return fs
}

// passwd and group are the official busybox image's, which is what the
// upstream test images derive from: root, www-data (33), nobody (65534) are
// the names critest's RunAsUserName and image-user specs rely on.
const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
