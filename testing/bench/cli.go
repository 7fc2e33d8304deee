package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// cli moves the large file through the ftfs command (a process of its
// own, whose peak RSS ftfstest samples) while the servers' RSS is
// sampled. The servers are restarted first, so that their VmHWM (a
// high-water mark for the process's lifetime) after the phase is the peak
// of this phase alone: the sampled peaks can miss a spike between samples.
func (b *bench) cli() {
	for _, role := range []string{"primary", "backup"} {
		b.sys.Kill(b.tb, role)
		b.sys.Restart(b.tb, role)
	}
	b.settle("restart of the file servers", nil)
	base := b.hwm()
	b.logf("cli: servers restarted; VmHWM primary %s, backup %s", mib(base["primary"]), mib(base["backup"]))

	c := b.sys.CLI(b.tb)
	if _, stderr, code := c.Run(b.tb, nil, []string{"FTFS_PASSWORD=" + b.pw}, "login", benchUser); code != 0 {
		b.tb.Fatalf("ftfs login: %s", stderr)
	}
	for run := 1; run <= b.cfg.Runs; run++ {
		name := fmt.Sprintf("cli/%d.bin", run)
		if put := b.cliRun(c, run, "put", name, "put", b.bigFile, name); put.ok() {
			b.settle("backup replica of "+name, b.replicaHas(name, b.cfg.Size))
		} else {
			b.settle("failed put", nil)
		}
		b.cliRun(c, run, "get", name, "get", name, "-")
		b.settle("cli get", nil)
		b.getToFile(c, run, name)
		b.dropLarge(name, false)
	}
	end := b.hwm()
	for _, role := range []string{"primary", "backup"} {
		b.add(Sample{Phase: "cli", Op: "hwm", System: sysFTFS, RSS: map[string]int64{role: end[role], role + " at start": base[role]}})
	}
	b.logf("cli: VmHWM after the phase: primary %s, backup %s", mib(end["primary"]), mib(end["backup"]))
}

// cliRun runs one ftfs command moving the large file and records it.
func (b *bench) cliRun(c *ftfstest.CLI, run int, op, name string, args ...string) Sample {
	rss := sampleRSS(b.pids())
	start := time.Now()
	res := c.Exec(b.tb, nil, io.Discard, nil, args...)
	s := Sample{Phase: "cli", Op: op, System: sysCLI, Run: run, Bytes: b.cfg.Size, Seconds: since(start)}
	s.RSS = rss.finish()
	s.RSS["cli"] = res.MaxRSS
	s.CPU = map[string]float64{"cli": res.CPU.Seconds()}
	if res.Code != 0 {
		s.Err = fmt.Sprintf("ftfs %s exited %d: %s", strings.Join(args, " "), res.Code, strings.TrimSpace(res.Stderr))
	}
	b.add(s)
	b.logf("cli run %d: ftfs %s %s: %s", run, op, name, describe(s))
	return s
}

// natsCLI is the NATS CLI's path, or "" when it is not installed
// (`go install github.com/nats-io/natscli/nats@v0.5.0`).
func natsCLI() string {
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "nats"); exec.Command(p, "--version").Run() == nil {
			return p
		}
	}
	return ""
}

// getToFile downloads name to a file with `ftfs get` and, when the NATS
// CLI is installed, with `nats object get` of the same object from the
// files bucket (as the operator), the two taking turns to go first: the
// CLI get's target is the NATS CLI's speed, and at most its CPU.
func (b *bench) getToFile(c *ftfstest.CLI, run int, name string) {
	dir := b.tb.TempDir()
	ftfsGet := func() {
		out := filepath.Join(dir, "ftfs.bin")
		b.cliRun(c, run, "get-file", name, "get", name, out)
		os.Remove(out)
	}
	nats := natsCLI()
	natsGet := func() {
		out := filepath.Join(dir, "nats.bin")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, nats, "object", "get", subjects.FilesBucket, name, "-O", out, "--force", "--no-progress",
			"--server", b.sys.URLs(), "--user", subjects.OperatorUser, "--password", b.sys.SystemPassword)
		var errb bytes.Buffer
		cmd.Stderr, cmd.Stdout = &errb, io.Discard
		start := time.Now()
		err := cmd.Run()
		s := Sample{Phase: "cli", Op: "get-file", System: sysNATSCLI, Run: run, Bytes: b.cfg.Size, Seconds: since(start)}
		if ps := cmd.ProcessState; ps != nil {
			s.CPU = map[string]float64{"cli": (ps.UserTime() + ps.SystemTime()).Seconds()}
		}
		if err != nil {
			s.Err = fmt.Sprintf("nats object get: %v: %s", err, strings.TrimSpace(errb.String()))
		}
		b.add(s)
		b.logf("cli run %d: nats object get %s: %s", run, name, describe(s))
		os.Remove(out)
	}
	if nats == "" {
		if run == 1 {
			b.logf("cli: nats object get: skipped (no NATS CLI; go install github.com/nats-io/natscli/nats@v0.5.0)")
		}
		ftfsGet()
		return
	}
	order := []func(){ftfsGet, natsGet}
	if run%2 == 0 {
		order[0], order[1] = order[1], order[0]
	}
	for _, get := range order {
		get()
		b.settle("get to a file", nil)
	}
}

// hwm is each file server's VmHWM now.
func (b *bench) hwm() map[string]int64 {
	out := map[string]int64{}
	for _, role := range []string{"primary", "backup"} {
		v, err := ftfstest.PeakRSS(b.sys.Process(role).Pid())
		if err != nil {
			b.tb.Fatalf("VmHWM of %s: %v", role, err)
		}
		out[role] = v
	}
	return out
}
