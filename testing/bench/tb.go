package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// runner is the testing.TB that ftfstest takes, for a command rather than
// a test. testing.TB has an unexported method, so runner embeds the
// interface (nil) to satisfy it and implements every method ftfstest
// calls; any other method would panic on the nil embedded value, which is
// a bug in the harness, not a failed measurement.
//
// A fatal error ends the whole command: the cleanups run (they stop every
// broker and file server, which run in their own process groups and would
// otherwise outlive the harness) and the process exits with status 1.
type runner struct {
	testing.TB

	logs    io.Writer // process output and harness chatter; io.Discard unless -v
	tempDir string    // parent of every TempDir

	mu       sync.Mutex
	cleanups []func()
	dirs     int
	failed   bool
	ending   atomic.Bool
}

func newRunner(logs io.Writer, tempDir string) *runner {
	return &runner{logs: logs, tempDir: tempDir}
}

func (r *runner) Helper()      {}
func (r *runner) Name() string { return "bench" }

func (r *runner) Log(args ...any) { r.Logf("%s", fmt.Sprint(args...)) }

func (r *runner) Logf(format string, args ...any) {
	fmt.Fprintf(r.logs, format+"\n", args...)
}

// Errorf reports a problem that does not stop the run.
func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (r *runner) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Fatalf(format string, args ...any) { r.die(fmt.Sprintf(format, args...)) }
func (r *runner) Fatal(args ...any)                 { r.die(fmt.Sprint(args...)) }
func (r *runner) FailNow()                          { r.die("failed") }

// die ends the command from any goroutine: the first caller runs the
// cleanups and exits; a later one (a cleanup failing, or another goroutine
// failing meanwhile) only stops its own goroutine.
func (r *runner) die(msg string) {
	fmt.Fprintf(os.Stderr, "bench: fatal: %s\n", msg)
	if !r.ending.CompareAndSwap(false, true) {
		runtime.Goexit()
	}
	r.runCleanups()
	os.Exit(1)
}

// Cleanup registers f to run when the command ends, last registered first.
func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// TempDir makes a directory under the run's temporary dir; the cleanups
// remove the run's dir as a whole.
func (r *runner) TempDir() string {
	r.mu.Lock()
	r.dirs++
	n := r.dirs
	r.mu.Unlock()
	dir := fmt.Sprintf("%s/%03d", r.tempDir, n)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	return dir
}

// runCleanups runs the registered cleanups once, last first.
func (r *runner) runCleanups() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// finish ends a run that did not die: cleanups, and whether any Errorf was
// reported.
func (r *runner) finish() bool {
	if !r.ending.CompareAndSwap(false, true) {
		select {} // another goroutine is dying: it exits the process
	}
	r.runCleanups()
	return !r.Failed()
}
