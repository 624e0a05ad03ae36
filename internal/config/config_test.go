package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultTOMLMatchesDefault(t *testing.T) {
	var cfg Config
	if err := Parse(DefaultTOML(), &cfg); err != nil {
		t.Fatalf("parse default.toml: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(normalize(cfg), normalize(want)) {
		t.Fatalf("default.toml and Default() differ:\n file: %+v\n code: %+v", cfg, want)
	}
}

// normalize treats nil and empty slices alike.
func normalize(c Config) Config {
	if len(c.Image.PinnedImages) == 0 {
		c.Image.PinnedImages = nil
	}
	return c
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		check   func(Config) bool
		wantErr string
	}{
		{name: "empty keeps defaults", in: "", check: func(c Config) bool { return c.Root == "/var/lib/crid" }},
		{name: "override", in: "root = \"/srv/crid\"\n[image]\npull_progress_timeout = \"5s\"\n",
			check: func(c Config) bool {
				return c.Root == "/srv/crid" && time.Duration(c.Image.PullProgressTimeout) == 5*time.Second
			}},
		{name: "unknown key names its line", in: "root = \"/x\"\n\nlisen = \"a\"\n", wantErr: `line 3 column 1: unknown key "lisen"`},
		{name: "unknown nested key", in: "[image]\nmirrors = 1\n", wantErr: `line 2 column 1: unknown key "image.mirrors"`},
		{name: "syntax error has position", in: "root = \n", wantErr: "line 1"},
		{name: "bad type", in: "root = 3\n", wantErr: "line 1"},
		{name: "relative root", in: "root = \"var\"\n", wantErr: "root: \"var\" is not an absolute path"},
		{name: "bad driver", in: "cgroup_driver = \"x\"\n", wantErr: "cgroup_driver"},
		{name: "bad duration", in: "[image]\npull_progress_timeout = \"soon\"\n", wantErr: "line 2"},
		{name: "bad level", in: "log_level = \"loud\"\n", wantErr: "log_level"},
		{name: "cdi dirs replaced", in: "[cdi]\nspec_dirs = [\"/opt/cdi\"]\n",
			check: func(c Config) bool { return len(c.CDI.SpecDirs) == 1 && c.CDI.SpecDirs[0] == "/opt/cdi" }},
		{name: "cdi off", in: "[cdi]\nspec_dirs = []\n", check: func(c Config) bool { return len(c.CDI.SpecDirs) == 0 }},
		{name: "relative cdi dir", in: "[cdi]\nspec_dirs = [\"cdi\"]\n", wantErr: `cdi.spec_dirs[0]: "cdi" is not an absolute path`},
		{name: "unknown cdi key", in: "[cdi]\nspec_dir = []\n", wantErr: `line 2 column 1: unknown key "cdi.spec_dir"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := Parse([]byte(tc.in), &cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("unexpected config %+v", cfg)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	f.Add([]byte("[image]\npinned_images = [\"a\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		_ = Parse(data, &cfg)
	})
}
