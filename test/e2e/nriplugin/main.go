// Command nriplugin is an NRI plugin for crid's end-to-end tests, built on
// the NRI library's stub. It injects an environment variable and a
// read-only bind mount into every container, or, while a file exists,
// refuses every container.
//
//	nriplugin -socket PATH -fail-while FILE -ready FILE   connects to crid's socket
//	nriplugin                                 started by crid from its plugin dir,
//	                                          configured by its conf file:
//	                                          "env NAME=VALUE" and "mount SRC:DST" lines
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	env, mount, failWhile, ready string
}

// Synchronize marks the plugin connected (the -ready file).
func (p *plugin) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	if p.ready != "" {
		return nil, os.WriteFile(p.ready, nil, 0o644)
	}
	return nil, nil
}

// Configure reads the configuration crid passes from the plugin's conf file.
func (p *plugin) Configure(_ context.Context, config, runtime, version string) (stub.EventMask, error) {
	for _, line := range strings.Split(config, "\n") {
		key, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch key {
		case "env":
			p.env = value
		case "mount":
			p.mount = value
		case "":
		default:
			return 0, fmt.Errorf("unknown configuration %q", line)
		}
	}
	return 0, nil
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if p.failWhile != "" {
		if _, err := os.Stat(p.failWhile); err == nil {
			return nil, nil, fmt.Errorf("nriplugin refuses container %s of pod %s", c.GetName(), pod.GetName())
		}
		return nil, nil, nil
	}
	adj := &api.ContainerAdjustment{}
	if name, value, ok := strings.Cut(p.env, "="); ok {
		adj.AddEnv(name, value)
	}
	if src, dst, ok := strings.Cut(p.mount, ":"); ok {
		adj.AddMount(&api.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	return adj, nil, nil
}

func main() {
	socket := flag.String("socket", "", "crid's NRI socket (none: started by crid)")
	name := flag.String("name", "nriplugin", "plugin name, when connecting to the socket")
	idx := flag.String("idx", "50", "plugin index, when connecting to the socket")
	p := &plugin{}
	flag.StringVar(&p.failWhile, "fail-while", "", "refuse every container while this file exists")
	flag.StringVar(&p.ready, "ready", "", "file to create once synchronised with crid")
	flag.Parse()
	var opts []stub.Option
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	}
	s, err := stub.New(p, opts...)
	if err == nil {
		err = s.Run(context.Background())
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "nriplugin:", err)
		os.Exit(1)
	}
}
