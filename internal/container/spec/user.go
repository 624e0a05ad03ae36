package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxID is the largest uid/gid runc accepts.
const maxID = math.MaxInt32

// userDB reads the image's passwd and group files. Both are opened through an
// os.Root so that a symlinked /etc/passwd in a hostile image cannot make crid
// read host files.
type userDB struct {
	root string
}

// maxUserFileSize bounds what is read of /etc/passwd and /etc/group.
const maxUserFileSize = 16 << 20

// open opens a file of the image for reading. Only regular files are read,
// and only so much of them: a FIFO or a huge file in a hostile image must
// not hang or exhaust crid.
func (db userDB) open(name string) (io.ReadCloser, error) {
	if db.root == "" {
		return nil, fs.ErrNotExist
	}
	r, err := os.OpenRoot(db.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// Checked before opening, since opening a FIFO blocks.
	st, err := r.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, maxUserFileSize), f}, nil
}

// users returns the passwd entries matching filter; a missing file is no
// entries.
func (db userDB) users(filter func(user.User) bool) ([]user.User, error) {
	f, err := db.open("etc/passwd")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open image /etc/passwd: %w", err)
	}
	defer f.Close()
	return user.ParsePasswdFilter(f, filter)
}

func (db userDB) groups(filter func(user.Group) bool) ([]user.Group, error) {
	f, err := db.open("etc/group")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open image /etc/group: %w", err)
	}
	defer f.Close()
	return user.ParseGroupFilter(f, filter)
}

// resolveUser computes the process identity, following containerd:
//   - the user comes from run_as_username, else run_as_user, else the image's
//     User ("uid", "name", "uid:gid", "name:group", ...), else root;
//   - a numeric uid absent from /etc/passwd runs with gid 0, a name absent
//     from it is an error;
//   - run_as_group (only valid with a user) or the image's ":group" part
//     overrides the gid;
//   - supplementary groups are the primary gid, the user's memberships in the
//     image's /etc/group (policy Merge only) and supplemental_groups.
func resolveUser(rootfs string, sc *runtimeapi.LinuxContainerSecurityContext, imageUser string) (specs.User, error) {
	db := userDB{root: rootfs}
	var userPart, groupPart string
	fromCRI := false
	switch {
	case sc.GetRunAsUsername() != "":
		userPart, fromCRI = sc.GetRunAsUsername(), true
	case sc.GetRunAsUser() != nil:
		userPart, fromCRI = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10), true
	}
	if sc.GetRunAsGroup() != nil {
		if !fromCRI {
			return specs.User{}, invalid("linux.security_context.run_as_group", "set without run_as_user or run_as_username")
		}
		groupPart = strconv.FormatInt(sc.GetRunAsGroup().GetValue(), 10)
	}
	if !fromCRI && imageUser != "" {
		var ok bool
		userPart, groupPart, ok = strings.Cut(imageUser, ":")
		if ok && groupPart == "" || strings.Contains(groupPart, ":") {
			return specs.User{}, invalid("image config User", "malformed %q", imageUser)
		}
	}
	if userPart == "" {
		if groupPart != "" {
			return specs.User{}, invalid("image config User", "group without user in %q", imageUser)
		}
		userPart = "0"
	}
	field := "image config User"
	if fromCRI {
		field = "linux.security_context.run_as_user"
		if sc.GetRunAsUsername() != "" {
			field = "linux.security_context.run_as_username"
		}
	}

	var u specs.User
	var name string // the passwd name, for /etc/group memberships
	if uid, numeric, err := parseID(userPart); err != nil {
		return specs.User{}, invalid(field, "%v", err)
	} else if numeric {
		u.UID = uid
		found, err := db.users(func(e user.User) bool { return e.Uid == int(uid) })
		if err != nil {
			return specs.User{}, fmt.Errorf("%w: %s: read image /etc/passwd: %w", errdefs.ErrInvalidArgument, field, err)
		}
		if len(found) > 0 {
			u.GID, name = uint32(found[0].Gid), found[0].Name
		}
	} else {
		found, err := db.users(func(e user.User) bool { return e.Name == userPart })
		if err != nil {
			return specs.User{}, fmt.Errorf("%w: %s: read image /etc/passwd: %w", errdefs.ErrInvalidArgument, field, err)
		}
		if len(found) == 0 {
			return specs.User{}, invalid(field, "user %q not found in the image's /etc/passwd", userPart)
		}
		if found[0].Uid < 0 || found[0].Uid > maxID || found[0].Gid < 0 || found[0].Gid > maxID {
			return specs.User{}, invalid(field, "user %q has an out-of-range uid/gid", userPart)
		}
		u.UID, u.GID, name = uint32(found[0].Uid), uint32(found[0].Gid), userPart
	}

	if groupPart != "" {
		gfield := "image config User"
		if fromCRI {
			gfield = "linux.security_context.run_as_group"
		}
		gid, numeric, err := parseID(groupPart)
		if err != nil {
			return specs.User{}, invalid(gfield, "%v", err)
		}
		if !numeric {
			found, err := db.groups(func(g user.Group) bool { return g.Name == groupPart })
			if err != nil {
				return specs.User{}, fmt.Errorf("%w: %s: read image /etc/group: %w", errdefs.ErrInvalidArgument, gfield, err)
			}
			if len(found) == 0 || found[0].Gid < 0 || found[0].Gid > maxID {
				return specs.User{}, invalid(gfield, "group %q not found in the image's /etc/group", groupPart)
			}
			gid = uint32(found[0].Gid)
		}
		u.GID = gid
	}

	gids := []uint32{u.GID}
	policy := sc.GetSupplementalGroupsPolicy()
	switch policy {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
		if name != "" {
			member, err := db.groups(func(g user.Group) bool { return slices.Contains(g.List, name) })
			if err != nil {
				return specs.User{}, fmt.Errorf("%w: read image /etc/group: %w", errdefs.ErrInvalidArgument, err)
			}
			for _, g := range member {
				if g.Gid >= 0 && g.Gid <= maxID {
					gids = append(gids, uint32(g.Gid))
				}
			}
		}
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		// Only what the pod spec says: the image cannot add groups.
	default:
		return specs.User{}, invalid("linux.security_context.supplemental_groups_policy", "unknown policy %d", policy)
	}
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > maxID {
			return specs.User{}, invalid("linux.security_context.supplemental_groups", "gid %d out of range", g)
		}
		gids = append(gids, uint32(g))
	}
	slices.Sort(gids)
	u.AdditionalGids = slices.Compact(gids)
	return u, nil
}

// parseID reports whether s is a numeric id and returns it; a number outside
// [0, MaxInt32] is an error rather than a name.
func parseID(s string) (uint32, bool, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, false, fmt.Errorf("id %q out of range", s)
		}
		return 0, false, nil
	}
	if n < 0 || n > maxID {
		return 0, false, fmt.Errorf("id %q out of range", s)
	}
	return uint32(n), true, nil
}
