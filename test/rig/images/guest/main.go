// Command guest is the one static helper binary placed inside the rig's test
// images. It is a multi-call binary, like busybox: what it does depends on the
// name it was started under (argv[0]), so the image builder installs it once
// and points symlinks at it.
//
//	pause            sleep until SIGINT/SIGTERM, reaping orphans (the sandbox's /pause)
//	nginx            stand-in for nginx: a "master process" that writes
//	                 /var/run/nginx.pid and supervises busybox httpd
//	httpd-foreground stand-in for Apache's entrypoint: logs a line naming
//	                 httpd and supervises busybox httpd
//	nnp              prints "Effective uid: N" (installed setuid root)
//	pgrep, ipcs      the two tools critest calls that Debian's busybox lacks
//	nmeter           busybox's nmeter, its time directive only (%[N]t): the
//	                 node e2e suite stamps log lines with it; Debian's
//	                 busybox lacks it
//
// It uses only the standard library and is built with CGO_ENABLED=0 by the
// rig at image-build time, so no prebuilt binary is committed. It must stay
// free of non-std imports: the rig compiles it from an embedded copy in a
// throwaway module.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginxTitle is what real nginx puts in /proc/1/cmdline; critest's
// ContainerPID spec greps it for "master process".
const nginxTitle = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	// "guest <tool> args..." also works, which helps when debugging by hand.
	if name == "guest" || name == "rig-guest" {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: guest pause|nginx|httpd-foreground|nnp|pgrep|ipcs|nmeter [args]")
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	switch {
	case name == "pause":
		os.Exit(pause())
	case strings.HasPrefix(name, "nginx"):
		os.Exit(nginx(args))
	case name == "httpd-foreground":
		os.Exit(httpd())
	case name == "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case name == "pgrep":
		os.Exit(pgrep(args))
	case name == "ipcs":
		os.Exit(ipcs(args))
	case name == "nmeter":
		os.Exit(nmeter(args))
	default:
		fmt.Fprintf(os.Stderr, "guest: unknown tool %q\n", name)
		os.Exit(127)
	}
}

// pause mirrors kubernetes' pause.c: exit 0 on INT/TERM and reap children,
// because as a sandbox's PID 1 it inherits every orphan of a shared PID
// namespace.
func pause() int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", s)
			return 0
		}
		reap()
	}
	return 0
}

func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// nginx re-executes itself so that its command line reads like real nginx's
// master process while the kernel's comm stays "nginx" (comm comes from the
// executed path, cmdline from argv): pidof finds it by comm and critest's
// ContainerPID spec finds "master process" in /proc/1/cmdline.
func nginx(args []string) int {
	if os.Args[0] != nginxTitle {
		self, err := exec.LookPath("nginx")
		if err != nil {
			self = "/usr/sbin/nginx"
		}
		err = syscall.Exec(self, []string{nginxTitle}, os.Environ())
		fmt.Fprintf(os.Stderr, "nginx: re-exec %s: %v\n", self, err)
		return 1
	}
	port := confPort("/etc/nginx/conf.d/default.conf", 80)
	if err := os.MkdirAll("/var/run", 0o755); err == nil {
		// The HostPID spec polls for this file and compares it with pidof.
		_ = os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	defer os.Remove("/var/run/nginx.pid")
	fmt.Fprintf(os.Stderr, "nginx: master process started, serving /usr/share/nginx/html on :%d\n", port)
	return supervise("/usr/share/nginx/html", port)
}

// httpd announces itself: the multi-container spec waits for "httpd" in the
// container log, which real Apache satisfies with its startup warnings.
func httpd() int {
	fmt.Fprintln(os.Stderr, "httpd-foreground: httpd (busybox stand-in) serving /usr/local/apache2/htdocs on :80")
	return supervise("/usr/local/apache2/htdocs", 80)
}

// supervise runs busybox httpd in the foreground and turns any stop signal
// (TERM, INT, QUIT, or Apache's graceful WINCH) into TERM for it, so the
// image's StopSignal works whichever one the image config names.
func supervise(root string, port int) int {
	cmd := exec.Command("/bin/httpd", "-f", "-v", "-p", strconv.Itoa(port), "-h", root)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start busybox httpd: %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "got %v, stopping httpd\n", s)
			_ = cmd.Process.Signal(syscall.SIGTERM)
		case err := <-done:
			if err != nil {
				// A TERM-ed worker is the normal way out.
				if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signaled() {
					return 0
				}
				fmt.Fprintf(os.Stderr, "httpd: %v\n", err)
				return 1
			}
			return 0
		}
	}
}

// confPort reads the first "listen N;" of an nginx config, so hostnet-nginx
// can carry upstream's default.conf (port 12003) instead of a special flag.
func confPort(path string, def int) int {
	f, err := os.Open(path)
	if err != nil {
		return def
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimSuffix(strings.TrimSpace(sc.Text()), ";"))
		if len(fields) == 2 && fields[0] == "listen" {
			if p, err := strconv.Atoi(fields[1]); err == nil {
				return p
			}
		}
	}
	return def
}

// pgrep implements the procps subset critest relies on ("pgrep sleep"):
// an extended regexp matched against the process name, -f for the full
// command line, -x for an exact match. Exit 1 when nothing matches.
func pgrep(args []string) int {
	var full, exact, list bool
	var pattern string
	for _, a := range args {
		switch {
		case a == "--":
		case strings.HasPrefix(a, "-") && len(a) > 1 && pattern == "":
			for _, c := range a[1:] {
				switch c {
				case 'f':
					full = true
				case 'x':
					exact = true
				case 'l':
					list = true
				default:
					fmt.Fprintf(os.Stderr, "pgrep: unsupported option -%c\n", c)
					return 2
				}
			}
		default:
			pattern = a
		}
	}
	if pattern == "" {
		fmt.Fprintln(os.Stderr, "usage: pgrep [-flx] pattern")
		return 2
	}
	if exact {
		pattern = "^(" + pattern + ")$"
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		return 2
	}
	self := os.Getpid()
	found := false
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue // exited meanwhile
		}
		name := strings.TrimSuffix(string(comm), "\n")
		subject := name
		if full {
			cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil || len(cl) == 0 {
				continue
			}
			subject = strings.TrimRight(strings.ReplaceAll(string(cl), "\x00", " "), " ")
		}
		if !re.MatchString(subject) {
			continue
		}
		found = true
		if list {
			fmt.Printf("%d %s\n", pid, name)
		} else {
			fmt.Println(pid)
		}
	}
	if !found {
		return 1
	}
	return 0
}

func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// ipcs prints System V IPC objects from /proc/sysvipc in util-linux's
// layout. The HostIPC specs only check whether a segment id shows up, so an
// empty namespace must print headers without any digits.
func ipcs(args []string) int {
	kinds := map[string]bool{}
	for _, a := range args {
		switch a {
		case "-m":
			kinds["shm"] = true
		case "-q":
			kinds["msg"] = true
		case "-s":
			kinds["sem"] = true
		case "-a":
		default:
			fmt.Fprintf(os.Stderr, "ipcs: unsupported option %s\n", a)
			return 2
		}
	}
	if len(kinds) == 0 {
		kinds = map[string]bool{"shm": true, "msg": true, "sem": true}
	}
	if kinds["shm"] {
		fmt.Print("\n------ Shared Memory Segments --------\n")
		fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status")
		// key shmid perms size cpid lpid nattch uid ...
		for _, f := range sysvipc("shm") {
			if len(f) >= 8 {
				fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s\n", hexKey(f[0]), f[1], owner(f[7]), perms(f[2]), f[3], f[6])
			}
		}
	}
	if kinds["msg"] {
		fmt.Print("\n------ Message Queues --------\n")
		fmt.Printf("%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages")
		// key msqid perms cbytes qnum lspid lrpid uid ...
		for _, f := range sysvipc("msg") {
			if len(f) >= 8 {
				fmt.Printf("%-10s %-10s %-10s %-10s %-12s %-12s\n", hexKey(f[0]), f[1], owner(f[7]), perms(f[2]), f[3], f[4])
			}
		}
	}
	if kinds["sem"] {
		fmt.Print("\n------ Semaphore Arrays --------\n")
		fmt.Printf("%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems")
		// key semid perms nsems uid ...
		for _, f := range sysvipc("sem") {
			if len(f) >= 5 {
				fmt.Printf("%-10s %-10s %-10s %-10s %-10s\n", hexKey(f[0]), f[1], owner(f[4]), perms(f[2]), f[3])
			}
		}
	}
	fmt.Println()
	return 0
}

func sysvipc(kind string) [][]string {
	data, err := os.ReadFile("/proc/sysvipc/" + kind)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var out [][]string
	for _, l := range lines[1:] { // first line is the header
		out = append(out, strings.Fields(l))
	}
	return out
}

func hexKey(s string) string {
	k, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("0x%08x", uint32(k))
}

// perms trims the mode that /proc/sysvipc already prints in octal.
func perms(s string) string {
	p, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return s
	}
	return strconv.FormatInt(p&0o777, 8)
}

// owner resolves a uid through /etc/passwd, falling back to the number as
// util-linux does.
func owner(uid string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return uid
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[2] == uid {
			return f[0]
		}
	}
	return uid
}

// nmeter prints FORMAT every -d milliseconds (default 1000) until its output
// closes. Of busybox's directives it knows %[N]t, the local time with N
// fraction digits (0-6), and %%.
func nmeter(args []string) int {
	delay := time.Second
	if len(args) > 0 && strings.HasPrefix(args[0], "-d") {
		v := strings.TrimPrefix(args[0], "-d") // -dMSEC or -d MSEC
		args = args[1:]
		if v == "" && len(args) > 0 {
			v, args = args[0], args[1:]
		}
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			fmt.Fprintf(os.Stderr, "nmeter: bad -d %q\n", v)
			return 1
		}
		delay = time.Duration(ms) * time.Millisecond
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: nmeter [-d MSEC] FORMAT")
		return 1
	}
	format := args[0]
	for {
		line, err := nmeterLine(format, time.Now())
		if err != nil {
			fmt.Fprintln(os.Stderr, "nmeter:", err)
			return 1
		}
		if _, err := os.Stdout.WriteString(line + "\n"); err != nil {
			return 0
		}
		time.Sleep(delay)
	}
}

func nmeterLine(format string, now time.Time) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			b.WriteByte(format[i])
			continue
		}
		i++
		digits := 0
		if i < len(format) && format[i] >= '0' && format[i] <= '6' {
			digits = int(format[i] - '0')
			i++
		}
		switch {
		case i < len(format) && format[i] == 't':
			layout := "15:04:05"
			if digits > 0 {
				layout += "." + strings.Repeat("0", digits)
			}
			b.WriteString(now.Format(layout))
		case i < len(format) && format[i] == '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("unsupported directive in %q", format)
		}
	}
	return b.String(), nil
}
