// Command bench measures ftfs against the floor under it, nats.go's object
// store on the same broker, and against sftp on loopback when an sshd is
// installed, in one run, side by side:
//
//	go run ./testing/bench                      # the default run (1 GiB, 5,000 small files, 3 runs)
//	go run ./testing/bench -size 32MiB -small-count 300 -mixed-time 2s -runs 1   # a quick one
//	go run ./testing/bench -chart bench.json -o docs/bench.svg                   # the chart
//	go run ./testing/bench -phases scale -runs 1                               # 10^4, 10^5, 10^6 files (scale.go)
//
// It builds the ftfs binary and starts its own broker (file storage, one
// replica) and file servers (primary and backup) as separate processes on
// free loopback ports (testing/ftfstest), then measures: a large file's put
// and get; many small files' put, list and get rates; a tree of small
// files put with `ftfs put -r`, the object store one file after the other
// and `sftp -r`; 1, 8 and 32 clients
// doing mixed work; a large get and put during which the file server
// serving it is killed; and the peak RSS of the ftfs CLI and of each file
// server while they move the large file. Every measurement is repeated
// -runs times; the table shows medians and their ratio (ftfs ÷ the
// alternative, measured in the same run), against the targets of the
// benchmark issue. -out keeps every raw sample as JSON.
//
// Timings on a shared machine vary from run to run: compare ratios, never
// one absolute time.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftfs/ftfs/cli"
	"github.com/ftfs/ftfs/internal/bytesize"
)

// Config is a run's parameters, as the flags set them.
type Config struct {
	Size         int64    `json:"size"`
	Runs         int      `json:"runs"`
	Retries      int      `json:"retries"`
	SmallCount   int      `json:"small_count"`
	SmallSize    int64    `json:"small_size"`
	SmallClients int      `json:"small_clients"`
	SmallDeletes int      `json:"small_deletes"`
	TreeCount    int      `json:"tree_count,omitempty"`
	ListRepeat   int      `json:"list_repeat"`
	Clients      []int    `json:"clients"`
	MixedSeconds float64  `json:"mixed_seconds"`
	Phases       []string `json:"phases"`
	OpTimeout    float64  `json:"op_timeout_seconds"`
	// SettleWindow is the window in which the system must be idle, twice
	// in a row, before the next measurement (see bench.settle).
	SettleWindow float64 `json:"settle_window_seconds"`

	// ScaleCounts are the bucket sizes of the scale phase, ascending.
	ScaleCounts []int `json:"scale_counts,omitempty"`
}

// phases in the order they run.
var allPhases = []string{"large", "cli", "failover", "small", "tree", "mixed", "probe", "scale"}

// defaultPhases are those a run without -phases measures: the scale
// phase's million files take some five minutes of their own.
var defaultPhases = allPhases[:len(allPhases)-1]

func (c Config) has(phase string) bool { return slices.Contains(c.Phases, phase) }

func (c Config) opTimeout() time.Duration { return durationOf(c.OpTimeout) }

func (c Config) settleWindow() time.Duration { return durationOf(c.SettleWindow) }

// durationOf converts seconds, as the JSON keeps them.
func durationOf(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", "1GiB", "size of the large file (put, get, failover, peak RSS)")
	runs := fs.Int("runs", 3, "times each measurement is repeated; the table shows medians")
	retries := fs.Int("retries", 3, "times a failed large put is tried again (failures are counted)")
	smallCount := fs.Int("small-count", 5000, "number of small files")
	smallSize := fs.String("small-size", "4KiB", "size of each small file")
	smallClients := fs.Int("small-clients", 8, "clients putting and getting the small files at once")
	smallDeletes := fs.Int("small-deletes", 500, "small files deleted through each system, timed (the rest are removed untimed)")
	treeCount := fs.Int("tree-count", 10000, "files of -small-size in the directory put -r uploads (tree phase)")
	listRepeat := fs.Int("list-repeat", 3, "listings of the small files per run")
	clients := fs.String("clients", "1,8,32", "concurrency levels of the mixed-work phase")
	mixedTime := fs.Duration("mixed-time", 10*time.Second, "duration of each mixed-work measurement")
	phases := fs.String("phases", strings.Join(defaultPhases, ","), "phases to run: some of "+strings.Join(allPhases, ","))
	scaleCounts := fs.String("scale-counts", "10000,100000,1000000", "scale phase: the numbers of files the bucket holds, in turn")
	opTimeout := fs.Duration("op-timeout", 5*time.Minute, "deadline of one operation; a put that stalls past it failed")
	settle := fs.Duration("settle", 400*time.Millisecond, "between measurements, wait until the broker and servers were idle for two such windows")
	out := fs.String("out", "bench.json", "file for the raw figures (JSON)")
	markdown := fs.Bool("markdown", false, "also print the tables as Markdown")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the in-process clients) to `file`")
	tmp := fs.String("tmp", os.TempDir(), "directory for the run's data (brokers' stores, the large file)")
	verbose := fs.Bool("v", false, "show the output of the broker and file servers")
	chart := fs.String("chart", "", "render the saved results `file` (JSON) as an SVG chart instead of measuring")
	chartOut := fs.String("o", "bench.svg", "with -chart: the SVG file to write")
	report := fs.String("report", "", "print the tables of the saved results `file` (JSON) instead of measuring")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *chart != "":
		if err := renderChart(*chart, *chartOut); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", *chartOut)
		return 0
	case *report != "":
		res, err := loadResults(*report)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		tabulate(res)
		printResults(stdout, res, *markdown)
		return 0
	}
	cfg := Config{Runs: *runs, Retries: *retries, SmallCount: *smallCount, SmallClients: *smallClients, SmallDeletes: *smallDeletes, TreeCount: *treeCount, ListRepeat: *listRepeat,
		MixedSeconds: mixedTime.Seconds(), OpTimeout: opTimeout.Seconds(), SettleWindow: settle.Seconds()}
	if err := cfg.parse(*size, *smallSize, *clients, *phases, *scaleCounts); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	if *cpuProfile != "" {
		stop, err := cli.StartCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		defer stop()
	}

	dir, err := os.MkdirTemp(*tmp, "ftfs-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	logs := io.Discard
	if *verbose {
		logs = stderr
	}
	tb := newRunner(logs, dir)
	tb.Cleanup(func() { os.RemoveAll(dir) })
	// Lives as long as the command: an interrupt must stop the broker and
	// servers, which run in process groups of their own.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		tb.Fatalf("%v: stopping", s)
	}()

	// Saved after every phase, so that a run cut short keeps its figures.
	save := func(res *Results) {
		if err := res.save(*out); err != nil {
			tb.Errorf("save the results so far: %v", err)
		}
	}
	res := measure(tb, cfg, stderr, save)
	ok := tb.finish()
	printResults(stdout, res, *markdown)
	if err := res.save(*out); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "raw figures: %s\n", *out)
	if !ok {
		return 1
	}
	return 0
}

// printResults prints the tables, the census and the notes.
func printResults(w io.Writer, res *Results, markdown bool) {
	writeTable(w, res.Rows)
	if len(res.Latency) > 0 {
		fmt.Fprintln(w)
		writeLatency(w, res.Latency)
	}
	if len(res.Census) > 0 {
		fmt.Fprintln(w)
		for _, c := range res.Census {
			fmt.Fprintf(w, "census %s %s: %s\n", c.System, c.Op, censusLine(c))
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if markdown {
		fmt.Fprintln(w)
		writeMarkdown(w, res.Rows)
		fmt.Fprintln(w)
		writeLatencyMarkdown(w, res.Latency)
	}
}

// parse sets the fields given as text and checks them all.
func (cfg *Config) parse(size, smallSize, clients, phases, scaleCounts string) error {
	var err error
	if cfg.Size, err = bytesize.Parse(size); err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	if cfg.SmallSize, err = bytesize.Parse(smallSize); err != nil {
		return fmt.Errorf("-small-size: %w", err)
	}
	for _, f := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive number", f)
		}
		cfg.Clients = append(cfg.Clients, n)
	}
	for _, p := range strings.Split(phases, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("-phases: unknown phase %q (want some of %s)", p, strings.Join(allPhases, ","))
		}
		cfg.Phases = append(cfg.Phases, p)
	}
	for _, f := range strings.Split(scaleCounts, ",") {
		if !cfg.has("scale") {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-scale-counts: %q is not a positive number", f)
		}
		cfg.ScaleCounts = append(cfg.ScaleCounts, n)
	}
	slices.Sort(cfg.ScaleCounts)
	switch {
	case cfg.Size < 16<<20:
		// Half of it must be more than an upload window (4 MiB), so that a
		// chunk has been acknowledged, naming the server holding the
		// upload, before the failover phase kills it.
		return fmt.Errorf("-size: at least 16MiB, so that a transfer can be interrupted midway")
	case cfg.Runs < 1 || cfg.Retries < 0 || cfg.SmallCount < 1 || cfg.TreeCount < 1 || cfg.SmallClients < 1 || cfg.ListRepeat < 1 || cfg.SmallSize < 1 || cfg.SmallDeletes < 0:
		return fmt.Errorf("-runs, -small-count, -tree-count, -small-clients, -list-repeat and -small-size must be positive, -retries and -small-deletes not negative")
	case cfg.MixedSeconds <= 0 || cfg.OpTimeout <= 0 || cfg.SettleWindow <= 0:
		return fmt.Errorf("-mixed-time, -op-timeout and -settle must be positive")
	}
	return nil
}

// hostInfo describes this machine now.
func hostInfo() Host {
	return Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Load: loadAverage()}
}

// loadAverage is the 1-minute load average, 0 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
