// Command rig runs the offline test rig: it builds local stand-ins for every
// image critest and crid's tests pull, serves them under their upstream
// names from a registry on 127.0.0.1, and writes the containerd-style
// hosts.toml directory that points crid at it. See test/rig/README.md.
//
//	rig serve --addr 127.0.0.1:5000 --hosts-dir DIR [--busybox-deb FILE]
//	          [--throttle BYTES_PER_SEC] [--bench] [--ready-file FILE]
//	rig list [--bench] [--busybox-deb FILE]
//	rig hosts --addr 127.0.0.1:5000 --hosts-dir DIR
//	rig bench-image     (prints the name of the pull-benchmark image)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/crid-project/crid/test/rig/images"
	"github.com/crid-project/crid/test/rig/mirror"
	"github.com/crid-project/crid/test/rig/registry"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "list":
		err = list(os.Args[2:])
	case "hosts":
		err = hosts(os.Args[2:])
	case "bench-image":
		// Served by "rig serve --bench"; scripts ask for the name here
		// instead of hard-coding it.
		fmt.Println(images.BenchImage)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rig:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rig serve|list|hosts|bench-image [flags]   (rig <cmd> -h for flags)")
	os.Exit(2)
}

type buildFlags struct {
	deb     string
	agnhost string
	bench   bool
	debug   bool
}

func (b *buildFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.deb, "busybox-deb", "", "Debian busybox .deb to take /bin/busybox from (default: this machine's /bin/busybox)")
	fs.StringVar(&b.agnhost, "agnhost", "", "dir with agnhost, localhost.crt and localhost.key (test/nodee2e/build.sh makes _output/agnhost): also serve agnhost and the images built on it")
	fs.BoolVar(&b.bench, "bench", false, "also build "+images.BenchImage+" (~100 MB, a few seconds)")
	fs.BoolVar(&b.debug, "debug", false, "log every registry request")
}

func (b *buildFlags) logger() *slog.Logger {
	level := slog.LevelInfo
	if b.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var bf buildFlags
	bf.register(fs)
	addr := fs.String("addr", "127.0.0.1:5000", "listen address")
	hostsDir := fs.String("hosts-dir", "", "write <dir>/<upstream-host>/hosts.toml here (required)")
	throttle := fs.Int64("throttle", 0, "limit each blob download to this many bytes/s (0: unlimited)")
	readyFile := fs.String("ready-file", "", "create this file once listening")
	_ = fs.Parse(args)
	if *hostsDir == "" {
		return errors.New("serve: --hosts-dir is required")
	}
	log := bf.logger()

	set, err := images.Build(images.Options{BusyboxDeb: bf.deb, Agnhost: bf.agnhost, Bench: bf.bench, Log: log})
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The hosts files name the bound address, which differs from --addr
	// when it asks for port 0.
	bound := ln.Addr().String()
	if err := mirror.Write(*hostsDir, bound, set.Hosts()); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           registry.New(set, registry.Options{Throttle: *throttle, Log: log}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(bound+"\n"), 0o644); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		defer os.Remove(*readyFile)
	}
	log.Info("registry listening", "addr", bound, "hosts_dir", *hostsDir, "throttle", *throttle)
	fmt.Println("ready")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case s := <-sigs:
		log.Info("shutting down", "signal", s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		// Throttled downloads may outlast the grace period; drop them.
		srv.Close()
	}
	return nil
}

func list(args []string) error {
	fs := flag.NewFlagSet("list", flag.ExitOnError)
	var bf buildFlags
	bf.register(fs)
	_ = fs.Parse(args)
	set, err := images.Build(images.Options{BusyboxDeb: bf.deb, Agnhost: bf.agnhost, Bench: bf.bench, Log: bf.logger()})
	if err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	for _, r := range set.Refs() {
		fmt.Printf("%s\t%s\t%s\n", r.Name, r.Digest, r.MediaType)
	}
	return nil
}

// hosts writes the hosts.toml directory without serving, for setups where
// the registry runs elsewhere or starts later.
func hosts(args []string) error {
	fs := flag.NewFlagSet("hosts", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "registry address the files point to")
	hostsDir := fs.String("hosts-dir", "", "directory to write (required)")
	_ = fs.Parse(args)
	if *hostsDir == "" {
		return errors.New("hosts: --hosts-dir is required")
	}
	return mirror.Write(*hostsDir, *addr, images.UpstreamHosts)
}
