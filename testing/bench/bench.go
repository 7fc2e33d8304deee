package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// benchUser owns every file the harness stores through ftfs (but the
// mixed phase's, whose clients are users of their own).
const benchUser = "bench"

// bench is one run of the harness.
type bench struct {
	tb       testing.TB
	cfg      Config
	progress io.Writer
	start    time.Time
	res      *Results

	sys    *ftfstest.System
	ftfs   ftfsStore   // the bench user's main client
	pw     string      // the bench user's password
	direct directStore // the direct bucket, over the service connection

	bigFile   string // the large file's content, on disk
	bigDigest string
	sftp      *sftpTarget // nil when no sshd could be started
}

// measure starts a system, runs the configured phases and computes the
// table. tb is a *testing.T in the smoke test, a runner in the command.
// After each phase it hands the results so far to saved (nil: none), so
// that a run cut short keeps what it measured.
func measure(tb testing.TB, cfg Config, progress io.Writer, saved func(*Results)) *Results {
	b := &bench{tb: tb, cfg: cfg, progress: progress, start: time.Now(),
		res: &Results{Started: time.Now().UTC(), Host: hostInfo(), Config: cfg}}
	b.setUp()
	others := b.watchOthers()
	phases := map[string]func(){"large": b.large, "cli": b.cli, "failover": b.failover, "small": b.small, "tree": b.tree, "mixed": b.mixed, "probe": b.probe, "scale": b.scale}
	for _, phase := range allPhases {
		if !cfg.has(phase) {
			continue
		}
		phases[phase]()
		if saved != nil {
			b.finish(others(), false)
			others = b.watchOthers() // again, from now on
			saved(b.res)
		}
	}
	b.finish(others(), true)
	return b.res
}

// finish completes the results with what the run measured so far: its
// end, the other processes' CPU use, the table. done says the run ended.
func (b *bench) finish(others []float64, done bool) {
	h := &b.res.Host
	h.OtherCores = append(h.OtherCores, others...)
	b.res.Finished = time.Now().UTC()
	h.LoadEnd = loadAverage()
	tabulate(b.res)
	if done && (median(h.OtherCores) > 0.1 || percentile(h.OtherCores, 90) > 0.5) {
		b.note("other processes used %.2f CPU cores (median; p90 %.2f) of the machine's %d during the run: expect the figures to vary",
			median(h.OtherCores), percentile(h.OtherCores, 90), h.CPUs)
	}
}

// logf prints a progress line, stamped with the time since the start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// note adds a remark to the results (and the printed report).
func (b *bench) note(format string, args ...any) {
	b.res.Notes = append(b.res.Notes, fmt.Sprintf(format, args...))
}

func (b *bench) add(s Sample) Sample {
	b.res.Samples = append(b.res.Samples, s)
	return s
}

// setUp starts the system (one broker, primary and backup), the bench
// user, the direct bucket, the large file on disk and sftp if it can.
func (b *bench) setUp() {
	b.logf("building ftfs and starting a broker, primary and backup")
	b.sys = ftfstest.Start(b.tb, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	b.pw = b.sys.AddUser(b.tb, benchUser)
	b.ftfs = ftfsStore{c: b.sys.Login(b.tb, benchUser)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if b.direct, err = openDirect(ctx, b.serviceConn()); err != nil {
		b.tb.Fatal(err)
	}
	for _, p := range []string{"broker1", "primary", "backup"} {
		b.logf("%s: pid %d", p, b.sys.Process(p).Pid())
	}
	if b.cfg.has("large") || b.cfg.has("cli") || b.cfg.has("failover") || b.cfg.has("probe") {
		b.writeBigFile()
	}
	if b.cfg.has("large") || b.cfg.has("tree") {
		var skip string
		b.sftp, skip = startSFTP(b.tb, b.tb.TempDir())
		if b.sftp == nil {
			b.logf("%s", skip)
			b.note("%s", skip)
		}
	}
}

// serviceConn is a new connection as the operator, for the object store
// and the scratch streams the measurements compare with (the file
// servers' own identity may write ftfs's buckets only), closed at the end.
func (b *bench) serviceConn() *nats.Conn {
	return b.sys.OperatorConn(b.tb)
}

// writeBigFile writes the large file's content once; every system reads
// the same bytes from it (from the page cache after the first read).
func (b *bench) writeBigFile() {
	b.bigFile = b.tb.TempDir() + "/large.bin"
	f, err := os.Create(b.bigFile)
	if err != nil {
		b.tb.Fatal(err)
	}
	src := ftfstest.NewStream(b.cfg.Size)
	if _, err := io.Copy(f, src); err != nil {
		b.tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.tb.Fatal(err)
	}
	b.bigDigest = src.Digest()
	b.logf("large file: %s, %s", sizeText(b.cfg.Size), b.bigFile)
}

// login makes another client of the bench user.
func (b *bench) login(user string) *client.Client {
	return b.sys.Login(b.tb, user)
}

// ctx is an operation's context.
func (b *bench) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.cfg.opTimeout())
}

// pids are the system's processes by name, as they run now (a restart
// changes them).
func (b *bench) pids() map[string]int {
	out := map[string]int{}
	for _, p := range []string{"broker1", "primary", "backup"} {
		out[p] = b.sys.Process(p).Pid()
	}
	return out
}

// Settling. A put leaves work behind: the backup copies the new file into
// its replica, an overwritten or deleted file's chunks are purged, the
// broker flushes. Measuring the next operation meanwhile would charge it
// with that work, so after every change the harness waits until the
// change is visible where it should be and the processes are idle.
const (
	settleIdle = 0.10 // CPU cores all three processes may use and be idle
	settleMax  = 3 * time.Minute
	clockTicks = 100 // USER_HZ of /proc/PID/stat on Linux
)

// settle waits until cond holds (nil: at once) and the broker and servers
// have been idle for two windows in a row, and records how long it took.
func (b *bench) settle(what string, cond func() bool) {
	start := time.Now()
	// The last measurement's writes may still sit in the page cache: the
	// kernel would write them back during the next one, which then pays
	// for them (a put right after sftp's took 20% longer).
	syscall.Sync()
	prev := b.cpuTicks()
	quiet := 0
	window := b.cfg.settleWindow()
	for quiet < 2 {
		time.Sleep(window)
		cur := b.cpuTicks()
		busy := float64(cur-prev) / clockTicks / window.Seconds()
		prev = cur
		if busy < settleIdle && (cond == nil || cond()) {
			quiet++
		} else {
			quiet = 0
		}
		if time.Since(start) > settleMax {
			b.note("%s: the system was still busy (or the backup's replica behind) after %v; measured anyway", what, settleMax)
			break
		}
	}
	took := time.Since(start)
	b.add(Sample{Phase: "settle", Op: what, System: sysFTFS, Seconds: took.Seconds()})
	if took > 2*time.Second {
		b.logf("  settled after %s in %.1fs", what, took.Seconds())
	}
}

// cpuTicks is the CPU time the broker and servers have used, in ticks.
func (b *bench) cpuTicks() int64 {
	var sum int64
	for _, pid := range b.pids() {
		sum += cpuTicks(pid)
	}
	return sum
}

// cpuTicks is a process's user and system CPU time, in clock ticks; 0 if
// it is not running.
func cpuTicks(pid int) int64 {
	_, ticks, _ := procStat(strconv.Itoa(pid))
	return ticks
}

// procStat reads a process's parent and CPU time (user and system, in
// clock ticks) from /proc/PID/stat.
func procStat(pid string) (ppid int, ticks int64, ok bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name, which may hold spaces, start with
	// the state (field 3): the parent is field 4, utime and stime 14 and 15.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, u + k, true
}

// replicaHas says whether the backup's replica holds name with size bytes
// (size -1: holds no such file).
func (b *bench) replicaHas(name string, size int64) func() bool {
	return func() bool {
		st, err := os.Stat(b.sys.ReplicaDir + "/" + name)
		if size < 0 {
			return os.IsNotExist(err)
		}
		return err == nil && st.Size() == size
	}
}

// replicaCount says whether the backup's replica holds n files under dir.
func (b *bench) replicaCount(dir string, n int) func() bool {
	return func() bool {
		entries, err := os.ReadDir(b.sys.ReplicaDir + "/" + dir)
		if os.IsNotExist(err) {
			return n == 0
		}
		return err == nil && len(entries) == n
	}
}

// rssSampler samples the resident set size (VmRSS) of processes every
// 20 ms, from its start to its stop, and keeps each one's peak. It cannot
// see a peak shorter than that; a clean VmHWM (servers just restarted)
// bounds what it misses, and the cli phase reports it.
type rssSampler struct {
	mu   sync.Mutex
	peak map[string]int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pids map[string]int) *rssSampler {
	s := &rssSampler{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for name, pid := range pids {
				if rss, err := currentRSS(pid); err == nil {
					s.mu.Lock()
					s.peak[name] = max(s.peak[name], rss)
					s.mu.Unlock()
				}
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// sampleServers samples the broker's and file servers' RSS while system
// is ftfs moves a large file; nil (a sampler that reports nothing)
// otherwise.
func (b *bench) sampleServers(system string) *rssSampler {
	if system != sysFTFS {
		return nil
	}
	return sampleRSS(b.pids())
}

// openBig opens the large file; the caller closes it.
func (b *bench) openBig() *os.File {
	f, err := os.Open(b.bigFile)
	if err != nil {
		b.tb.Fatal(err)
	}
	return f
}

// finish stops the sampler and returns the peaks (none from a nil one).
func (s *rssSampler) finish() map[string]int64 {
	if s == nil {
		return nil
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// currentRSS is a process's resident set size now (VmRSS), in bytes.
func currentRSS(pid int) (int64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// watchOthers samples, every second until the returned function is called,
// the CPU time that processes other than the harness and its descendants
// (broker, file servers, ftfs CLI, sshd) used, in cores; the function
// returns the samples.
func (b *bench) watchOthers() func() []float64 {
	stop, done := make(chan struct{}), make(chan []float64)
	go func() {
		var samples []float64
		prevAll, prevOurs := busyTicks(), ourTicks()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- samples
				return
			case <-tick.C:
			}
			all, ours := busyTicks(), ourTicks()
			used := all - prevAll
			for pid, t := range ours {
				// A process started since the last sample is new: all its
				// time is since then. One that ended took its last moments
				// with it, counted as others'.
				used -= t - prevOurs[pid]
			}
			samples = append(samples, max(0, float64(used)/clockTicks))
			prevAll, prevOurs = all, ours
		}
	}()
	return func() []float64 {
		close(stop)
		return <-done
	}
}

// ourTicks is the CPU time of this process and each of its descendants,
// by pid, in ticks.
func ourTicks() map[int]int64 {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	ticks := map[int]int64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, t, ok := procStat(e.Name()); ok {
			parent[pid], ticks[pid] = ppid, t
		}
	}
	self := os.Getpid()
	ours := map[int]int64{}
	for pid, t := range ticks {
		for p, depth := pid, 0; p > 1 && depth < 64; p, depth = parent[p], depth+1 {
			if p == self {
				ours[pid] = t
				break
			}
		}
	}
	return ours
}

// busyTicks is the CPU time the whole machine has spent busy, in ticks
// (the first line of /proc/stat: user, nice, system, irq, softirq, steal).
func busyTicks() int64 {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var sum int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		if i < len(f) {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			sum += v
		}
	}
	return sum
}

// compact purges the tombstones of both buckets (see compact) and waits
// for the system to settle.
func (b *bench) compact() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, bucket := range []string{subjects.FilesBucket, directBucket} {
		n, err := compact(ctx, b.direct.nc, bucket)
		if err != nil {
			b.tb.Errorf("compact %s: %v", bucket, err)
		}
		if n > 0 {
			b.logf("  purged %d tombstones of %s", n, bucket)
		}
	}
	b.settle("compaction", nil)
}

// timed runs op and returns its duration.
func timed(op func() error) (time.Duration, error) {
	start := time.Now()
	err := op()
	return time.Since(start), err
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// rotate returns xs rotated left by k: the order of the systems changes
// from run to run, so that none always goes first (cold caches) or last.
func rotate[T any](xs []T, k int) []T {
	if len(xs) == 0 {
		return xs
	}
	k %= len(xs)
	return append(append([]T{}, xs[k:]...), xs[:k]...)
}
