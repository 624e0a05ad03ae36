package main

import (
	"slices"
	"testing"

	"github.com/crid-project/crid/internal/config"
)

func TestChangedSettings(t *testing.T) {
	a := config.Default()
	for _, tc := range []struct {
		name   string
		change func(c *config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"root", func(c *config.Config) { c.Root = "/elsewhere" }, []string{"root"}},
		{"a table", func(c *config.Config) { c.Network.ConfDir = "/x" }, []string{"network"}},
		{"two", func(c *config.Config) { c.State = "/s"; c.ShmSize++ }, []string{"shm_size", "state"}},
	} {
		b := config.Default()
		tc.change(&b)
		if got := changedSettings(a, b); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
