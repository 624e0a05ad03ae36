package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// podCheckpoint writes a small valid pod checkpoint into a new dir.
func podCheckpoint(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		PodConfigFile:       `{"metadata":{"name":"p"}}`,
		"containers/a.tar":  "archive a",
		"containers/b2.tar": "archive b",
		PodShmTar:           "",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := PodManifest{PodID: "pod", Handler: "runc", Containers: []PodContainer{{Name: "a", ID: "1"}, {Name: "b2", ID: "2"}}}
	if err := WritePodManifest(context.Background(), dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReadPod(t *testing.T) {
	dir := podCheckpoint(t)
	m, cfg, err := ReadPod(context.Background(), dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != PodFormat || len(m.Containers) != 2 || len(m.Files) != 4 || string(cfg) != `{"metadata":{"name":"p"}}` {
		t.Fatalf("manifest %+v, config %s", m, cfg)
	}

	editManifest := func(edit func(*PodManifest)) func(string) error {
		return func(dir string) error {
			var m PodManifest
			b, _ := os.ReadFile(filepath.Join(dir, PodManifestFile))
			json.Unmarshal(b, &m)
			edit(&m)
			b, _ = json.Marshal(m)
			return os.WriteFile(filepath.Join(dir, PodManifestFile), b, 0o600)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(dir string) error
	}{
		{"a changed byte", func(d string) error {
			return os.WriteFile(filepath.Join(d, "containers/a.tar"), []byte("archive A"), 0o600)
		}},
		{"truncated", func(d string) error { return os.Truncate(filepath.Join(d, "containers/b2.tar"), 3) }},
		{"a file missing", func(d string) error { return os.Remove(filepath.Join(d, PodShmTar)) }},
		{"an extra file", func(d string) error { return os.WriteFile(filepath.Join(d, "containers/c.tar"), nil, 0o600) }},
		{"a symlink", func(d string) error {
			os.Remove(filepath.Join(d, PodShmTar))
			return os.Symlink("/etc/passwd", filepath.Join(d, PodShmTar))
		}},
		{"no manifest", func(d string) error { return os.Remove(filepath.Join(d, PodManifestFile)) }},
		{"another format", editManifest(func(m *PodManifest) { m.Format = 2 })},
		{"no containers", editManifest(func(m *PodManifest) { m.Containers = nil })},
		{"a repeated container", editManifest(func(m *PodManifest) { m.Containers[1].Name = "a" })},
		{"a name that leaves the dir", editManifest(func(m *PodManifest) { m.Containers[0].Name = "../a" })},
		{"an archive not listed", editManifest(func(m *PodManifest) { delete(m.Files, "containers/a.tar") })},
		{"a size past the limit", editManifest(func(m *PodManifest) { m.Files["containers/a.tar"] = FileSum{Size: 2 << 20} })},
	} {
		d := podCheckpoint(t)
		if err := tc.tamper(d); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadPod(context.Background(), d, 1<<20); !errors.Is(err, ErrBadArchive) {
			t.Errorf("%s: %v, want ErrBadArchive", tc.name, err)
		}
	}
}

func TestContainerArchive(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "a-1": true, "": false, ".": false, "..": false, "a/b": false, "A": false, "-a": false} {
		if _, err := ContainerArchive(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// FuzzReadPod: any manifest is read without a panic, and one that is not
// the checkpoint's is refused.
func FuzzReadPod(f *testing.F) {
	dir := podCheckpoint(f)
	b, _ := os.ReadFile(filepath.Join(dir, PodManifestFile))
	f.Add(b)
	f.Add([]byte(`{"format":1,"containers":[{"name":"a"}],"files":{"containers/a.tar":{"size":-1}}}`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(dir, PodManifestFile), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		m, _, err := ReadPod(context.Background(), dir, 1<<20)
		if err == nil && len(m.Files) != 4 {
			t.Fatalf("a manifest of %d files read as valid", len(m.Files))
		}
	})
}
