package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// A pod checkpoint is a directory (CheckpointPod's output_path):
//
//	manifest.json          PodManifest: what is in it, with the size and
//	                       sha256 of every other file
//	pod.json               the pod's PodSandboxConfig (protobuf JSON)
//	shm.tar                the pod's /dev/shm, which its containers share
//	containers/<name>.tar  each container's archive (WriteArchive's layout)
const (
	PodManifestFile = "manifest.json"
	PodConfigFile   = "pod.json"
	PodShmTar       = "shm.tar"
	podContainers   = "containers"
	// PodFormat is the layout version this crid writes and reads.
	PodFormat = 1
	// maxManifestBytes bounds manifest.json and pod.json.
	maxManifestBytes = 4 << 20
)

// PodManifest describes a pod checkpoint.
type PodManifest struct {
	Format         int       `json:"format"`
	Crid           string    `json:"crid"` // the version that wrote it
	CheckpointedAt time.Time `json:"checkpointedAt"`
	PodID          string    `json:"podID"`
	// Handler is the runtime handler the pod ran with: only it restores
	// the containers' CRIU images.
	Handler    string         `json:"handler"`
	Containers []PodContainer `json:"containers"`
	// Files are every file of the checkpoint but the manifest, by
	// slash-separated relative path.
	Files map[string]FileSum `json:"files"`
}

// PodContainer is one container of a pod checkpoint, with what RestorePod
// checks the restore-time configuration against: the process the
// checkpoint holds runs this image, command and user.
type PodContainer struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	Image      string   `json:"image"` // the image ID
	Command    []string `json:"command,omitempty"`
	Args       []string `json:"args,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"` // runAsUser/runAsGroup/runAsUsername as "uid:gid:name"
}

// FileSum is a file's size and sha256.
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// containerName: metadata names a pod's containers may have here, also
// file names (a DNS label, as the API server requires).
var containerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ContainerArchive is the path, in a pod checkpoint, of the named
// container's archive.
func ContainerArchive(name string) (string, error) {
	if !containerName.MatchString(name) {
		return "", fmt.Errorf("container name %q cannot name a file in a pod checkpoint", name)
	}
	return podContainers + "/" + name + ".tar", nil
}

// WriteShm writes the pod's /dev/shm at dir as a tar at dst.
func WriteShm(ctx context.Context, dir, dst string) error {
	_, _, err := writeRootfsDiff(ctx, dir, dst)
	return err
}

// RestoreShm unpacks a pod checkpoint's shm.tar into dir, the new pod's
// /dev/shm, inside an os.Root: no entry reaches outside.
func RestoreShm(ctx context.Context, checkpointDir, dir string) error {
	src := filepath.Join(checkpointDir, PodShmTar)
	if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return applyTar(ctx, src, dir)
}

// WritePodManifest sums every file under dir and writes manifest.json
// last: a checkpoint without it is incomplete.
func WritePodManifest(ctx context.Context, dir string, m PodManifest) error {
	m.Format = PodFormat
	m.Files = map[string]FileSum{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sum, err := sumFile(ctx, p, -1)
		if err != nil {
			return err
		}
		m.Files[filepath.ToSlash(rel)] = sum
		return nil
	})
	if err != nil {
		return fmt.Errorf("pod checkpoint manifest: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PodManifestFile), b, 0o600)
}

// ReadPod reads and verifies the pod checkpoint at dir: the manifest's
// format, and that dir holds exactly the files it lists (regular files,
// each of its size and sha256, limit bytes in all), with an archive for
// each of its containers. A tampered or truncated checkpoint is
// ErrBadArchive. It returns the manifest and pod.json.
func ReadPod(ctx context.Context, dir string, limit int64) (PodManifest, []byte, error) {
	var m PodManifest
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: pod checkpoint %s: %s", ErrBadArchive, dir, fmt.Sprintf(format, a...))
	}
	raw, err := readSmall(filepath.Join(dir, PodManifestFile))
	if err != nil {
		return m, nil, bad("%v", err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, nil, bad("manifest: %v", err)
	}
	if m.Format != PodFormat {
		return m, nil, bad("format %d, this crid reads %d", m.Format, PodFormat)
	}
	if len(m.Containers) == 0 {
		return m, nil, bad("no containers")
	}
	var names []string
	for _, c := range m.Containers {
		a, err := ContainerArchive(c.Name)
		if err != nil || slices.Contains(names, c.Name) {
			return m, nil, bad("container name %q is invalid or repeated", c.Name)
		}
		if _, ok := m.Files[a]; !ok {
			return m, nil, bad("no archive for container %q", c.Name)
		}
		names = append(names, c.Name)
	}
	if _, ok := m.Files[PodConfigFile]; !ok {
		return m, nil, bad("no %s", PodConfigFile)
	}
	var total int64
	seen := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "." || rel == PodManifestFile || (d.IsDir() && rel == podContainers):
			return nil
		case !d.Type().IsRegular():
			return bad("%s is not a regular file", rel)
		}
		want, ok := m.Files[rel]
		if !ok {
			return bad("%s is not in the manifest", rel)
		}
		if total += want.Size; want.Size < 0 || total > limit {
			return bad("larger than %d bytes", limit)
		}
		got, err := sumFile(ctx, p, want.Size)
		if err != nil {
			return err
		}
		if got != want {
			return bad("%s does not match the manifest", rel)
		}
		seen++
		return nil
	})
	if err != nil {
		return m, nil, err
	}
	if seen != len(m.Files) {
		return m, nil, bad("files in the manifest are missing")
	}
	config, err := readSmall(filepath.Join(dir, PodConfigFile))
	if err != nil {
		return m, nil, bad("%v", err)
	}
	return m, config, nil
}

// sumFile is the size and sha256 of the file at path, reading at most
// max+1 bytes (max < 0: no bound), and honouring ctx.
func sumFile(ctx context.Context, path string, max int64) (FileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if max >= 0 {
		r = io.LimitReader(f, max+1)
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, r})
	if err != nil {
		return FileSum{}, fmt.Errorf("read %s: %w", path, err)
	}
	return FileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ctxReader stops a long read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err == nil && len(b) > maxManifestBytes {
		err = fmt.Errorf("%s is larger than %d bytes", filepath.Base(path), maxManifestBytes)
	}
	return b, err
}
