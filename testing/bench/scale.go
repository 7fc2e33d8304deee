package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// The scale phase: how a file server's start (the load of its files
// index), its memory and listings grow with the number of files in the
// bucket. For each of -scale-counts (10^4, 10^5, 10^6) it fills the bucket
// up to that many empty files, written straight into the bucket's stream
// as the file servers write them (one meta message each, with its owner),
// then restarts the primary and measures, -runs times: the time from its
// launch until it answers a PING, until it answers a listing of one
// directory, and until its files index holds the bucket (its log says
// so); its RSS then and its peak; `ftfs ls` and the Go client's listing of
// the whole bucket and of a directory of scaleDir files, against the
// object store's List, which reads every file's meta whatever the prefix.
//
// The backup is stopped for the phase: its replica would copy every file
// into a directory of its own with two fsyncs each, which measures the
// disk, not the index (README, Scale).

// scaleDir is how many files each directory of the phase holds: the
// listing of part of the bucket lists one.
const scaleDir = 1000

// scaleListDir is the directory listed as part of the bucket.
const scaleListDir = "scale/0003/"

// inListDir is how many of n files scaleListDir holds.
func inListDir(n int) int { return min(scaleDir, max(0, n-3*scaleDir)) }

// scaleName is the name of the phase's i-th file.
func scaleName(i int) string { return fmt.Sprintf("scale/%04d/%07d", i/scaleDir, i) }

// emptyDigest is the object store's digest of no bytes.
var emptyDigest = func() string {
	sum := sha256.Sum256(nil)
	return subjects.Digest(sum[:])
}()

// scaleWindow is how many meta messages the fill has in flight at once.
const scaleWindow = 4000

func (b *bench) scale() {
	if len(b.cfg.ScaleCounts) == 0 {
		return
	}
	b.sys.Kill(b.tb, "backup")
	b.logf("scale: backup stopped (its replica would copy every file into its dir)")
	cli := b.sys.CLI(b.tb)
	cli.Timeout = b.cfg.opTimeout()
	if _, stderr, code := cli.Run(b.tb, nil, []string{"FTFS_PASSWORD=" + b.pw}, "login", benchUser); code != 0 {
		b.tb.Fatalf("ftfs login: %s", stderr)
	}
	have := 0
	for _, n := range b.cfg.ScaleCounts {
		if n > have {
			b.fillScale(have, n)
			have = n
		}
		b.settle(fmt.Sprintf("%d files stored", n), nil)
		for run := 1; run <= b.cfg.Runs; run++ {
			b.scaleStart(n, run, false)
			b.scaleLists(cli, n, run)
			b.scaleStart(n, run, true)
		}
	}
}

// fillScale stores files from to to-1: empty files, one meta message each,
// as a one-request put of an empty file writes it.
func (b *bench) fillScale(from, to int) {
	js, err := jetstream.New(b.direct.nc, jetstream.WithPublishAsyncMaxPending(scaleWindow))
	if err != nil {
		b.tb.Fatal(err)
	}
	start := time.Now()
	now := start.UTC()
	retried := 0
	for lo := from; lo < to; lo += scaleWindow {
		todo := make([]int, 0, scaleWindow)
		for i := lo; i < min(lo+scaleWindow, to); i++ {
			todo = append(todo, i)
		}
		for attempt := 0; len(todo) > 0; attempt++ {
			if attempt > 20 {
				b.tb.Fatalf("scale: fill: %d meta messages still refused after %d attempts", len(todo), attempt)
			}
			futures := make([]jetstream.PubAckFuture, len(todo))
			for k, i := range todo {
				if futures[k], err = js.PublishMsgAsync(scaleMeta(i, now)); err != nil {
					break
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.tb.Fatalf("scale: fill: no acknowledgement within a minute")
			}
			var again []int
			for k, f := range futures {
				if f == nil {
					again = append(again, todo[k])
					continue
				}
				select {
				case <-f.Ok():
				case <-f.Err():
					again = append(again, todo[k])
				}
			}
			if len(again) > 0 {
				retried += len(again)
				time.Sleep(100 * time.Millisecond) // JetStream's ingest queue was full (429)
			}
			todo = again
		}
	}
	took := since(start)
	b.add(Sample{Phase: "scale", Op: "fill", System: sysDirect, Files: to - from, Bucket: to, Seconds: took})
	b.logf("scale: stored %d files (%d to %d) in %.1fs (%.0f files/s, %d sent again)", to-from, from, to, took, float64(to-from)/took, retried)
}

// scaleMeta is the meta message of the phase's i-th file, as the file
// servers write an empty file's.
func scaleMeta(i int, now time.Time) *nats.Msg {
	name := scaleName(i)
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name: name,
			Metadata: map[string]string{
				subjects.MetaOwner: benchUser,
				// The mark of the request that wrote it (primary's stamped).
				"ftfs-request": fmt.Sprintf("%064x", i),
			},
			Opts: &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
		},
		Bucket:  subjects.FilesBucket,
		NUID:    nuid.Next(),
		ModTime: now,
		Digest:  emptyDigest,
	}
	data, _ := json.Marshal(info)
	m := nats.NewMsg(subjects.ObjectMeta(subjects.FilesBucket, name))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = data
	return m
}

// indexLoaded matches the primary's log line saying its files index holds
// what the bucket held when its watch began.
var indexLoaded = regexp.MustCompile(`files index loaded.*files=(\d+).*took=(\S+)`)

// scaleStart restarts the primary and times its start: until it answers a
// PING, a listing of one directory, and until its files index is loaded.
// With fromSnapshot the primary is stopped as an operator would, and
// writes its index's snapshot as it stops; without, it is killed and its
// snapshot removed, so that it reads every file, as a first start does.
func (b *bench) scaleStart(n, run int, fromSnapshot bool) {
	logged := len(b.sys.Logs("primary"))
	op := func(name string) string {
		if fromSnapshot {
			return name + "-snapshot"
		}
		return name
	}
	if fromSnapshot {
		b.sys.Stop(b.tb, "primary")
	} else {
		b.sys.Kill(b.tb, "primary")
		if err := os.RemoveAll(b.sys.IndexDir("primary")); err != nil {
			b.tb.Fatal(err)
		}
	}
	brokerPid := b.sys.Process("broker1").Pid()
	brokerTicks := cpuTicks(brokerPid)
	t0 := time.Now()
	b.sys.Restart(b.tb, "primary")
	ready := since(t0)
	pid := b.sys.Process("primary").Pid()
	rss := sampleRSS(map[string]int{"primary": pid, "broker1": b.sys.Process("broker1").Pid()})
	b.add(Sample{Phase: "scale", Op: op("ready"), System: sysFTFS, Run: run, Bucket: n, Seconds: ready})

	// The first listing, while the index may still be loading.
	ctx, cancel := b.ctx()
	files, err := b.ftfs.list(ctx, scaleListDir)
	cancel()
	if err == nil && files != inListDir(n) {
		err = fmt.Errorf("listed %d files, want %d", files, inListDir(n))
	}
	first := b.add(Sample{Phase: "scale", Op: op("first-list"), System: sysFTFS, Run: run, Bucket: n, Files: files, Seconds: since(t0), Err: errText(err)})

	var loaded Sample
	deadline := time.Now().Add(b.cfg.opTimeout())
	for {
		if m := indexLoaded.FindStringSubmatch(b.sys.Logs("primary")[logged:]); m != nil {
			// The CPU both took: the start's cost whatever the machine's
			// load (the primary's includes the first listing's).
			loaded = Sample{Phase: "scale", Op: op("index"), System: sysFTFS, Run: run, Bucket: n, Seconds: since(t0),
				CPU: map[string]float64{"primary": float64(cpuTicks(pid)) / clockTicks, "broker1": float64(cpuTicks(brokerPid)-brokerTicks) / clockTicks}}
			if d, err := time.ParseDuration(m[2]); err == nil {
				loaded.StepMS = []float64{float64(d) / float64(time.Millisecond)}
			}
			_, _ = fmt.Sscan(m[1], &loaded.Files)
			if loaded.Files < n {
				loaded.Err = fmt.Sprintf("the index holds %s files, want at least %d", m[1], n)
			}
			break
		}
		if time.Now().After(deadline) {
			loaded = Sample{Phase: "scale", Op: op("index"), System: sysFTFS, Run: run, Bucket: n, Seconds: since(t0),
				Err: fmt.Sprintf("no \"files index loaded\" in the primary's log within %v", b.cfg.opTimeout())}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.add(loaded)
	b.settle("primary's start", nil)
	after, _ := currentRSS(pid)
	broker, _ := currentRSS(b.sys.Process("broker1").Pid())
	hwm, _ := ftfstest.PeakRSS(pid)
	peaks := rss.finish()
	b.add(Sample{Phase: "scale", Op: op("rss"), System: sysFTFS, Run: run, Bucket: n,
		RSS: map[string]int64{"primary": after, "primary peak": max(hwm, peaks["primary"]), "broker1": broker}})
	how := "reading every file"
	if fromSnapshot {
		how = "from its snapshot"
	}
	b.logf("scale %d files, run %d, %s: primary answers a PING after %.2fs, lists a directory after %s, index loaded after %s (server: %.0f ms; CPU: primary %.1fs, broker %.1fs); RSS %s, peak %s; broker %s",
		n, run, how, ready, describe(first), describe(loaded), median(loaded.StepMS), loaded.CPU["primary"], loaded.CPU["broker1"], mib(after), mib(max(hwm, peaks["primary"])), mib(broker))
}

// scaleLists lists the whole bucket and one directory through ftfs (the
// Go client and the CLI) and the object store, then reads the primary's
// peak RSS (its start and the listings).
func (b *bench) scaleLists(cli *ftfstest.CLI, n, run int) {
	obs, err := b.direct.bucket(context.Background(), subjects.FilesBucket)
	if err != nil {
		b.tb.Fatal(err)
	}
	alt := directStore{nc: b.direct.nc, obs: obs}
	for _, system := range rotate([]string{sysFTFS, sysDirect, sysCLI}, run-1) {
		for _, prefix := range []string{"", scaleListDir} {
			want, op := n, "list"
			if prefix != "" {
				want, op = inListDir(n), "list-dir"
			}
			s := Sample{Phase: "scale", Op: op, System: system, Run: run, Bucket: n}
			switch system {
			case sysCLI:
				args := []string{"ls"}
				if prefix != "" {
					args = append(args, prefix)
				}
				var lines lineCounter
				start := time.Now()
				res := cli.Exec(b.tb, nil, &lines, nil, args...)
				s.Seconds = since(start)
				s.Files = int(lines.n.Load()) - 1 // the header
				s.RSS = map[string]int64{"cli": res.MaxRSS}
				if res.Code != 0 {
					s.Err = fmt.Sprintf("ftfs %s exited %d: %s", strings.Join(args, " "), res.Code, strings.TrimSpace(res.Stderr))
				}
			default:
				st := store(b.ftfs)
				if system == sysDirect {
					st = alt
				}
				ctx, cancel := b.ctx()
				start := time.Now()
				s.Files, err = st.list(ctx, prefix)
				s.Seconds = since(start)
				cancel()
				s.Err = errText(err)
			}
			if s.ok() && s.Files < want {
				s.Err = fmt.Sprintf("listed %d files, want %d", s.Files, want)
			}
			b.add(s)
			b.logf("scale %d files, run %d: %s %s %q: %s", n, run, system, op, prefix, describe(s))
			b.settle("listing", nil)
		}
	}
	hwm, _ := ftfstest.PeakRSS(b.sys.Process("primary").Pid())
	b.add(Sample{Phase: "scale", Op: "rss-lists", System: sysFTFS, Run: run, Bucket: n, RSS: map[string]int64{"primary peak": hwm}})
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

var _ io.Writer = (*lineCounter)(nil)

// The scale targets: a file server with 10^6 files starts in
// seconds and stays under 500 MiB.
const (
	scaleStartBound = 10        // seconds from launch until the files index is loaded
	scaleRSSBound   = 500 << 20 // the primary's peak RSS
)

// scaleRows are the scale phase's table: for each bucket size, the
// primary's start and memory, and the listings against the object store's.
func scaleRows(res *Results) []Row {
	var rows []Row
	for _, n := range res.Config.ScaleCounts {
		pick := func(op, system string) []Sample {
			var out []Sample
			for _, s := range res.pick("scale", op, system) {
				if s.Bucket == n {
					out = append(out, s)
				}
			}
			return out
		}
		files := fmt.Sprintf("%d files", n)
		timeOf := func(name, op, system string) Row {
			xs, runs := seconds(pick(op, system))
			return Row{Name: name, Unit: "s", FTFS: median(xs), FTFSRuns: runs}
		}
		// The start: no alternative, a bound. A restart reads the index's
		// snapshot; a first start (or one without it) reads every file.
		for _, st := range []struct{ suffix, what string }{
			{"", "reading every file"},
			{"-snapshot", "from its snapshot"},
		} {
			of := func(name string) string { return "start " + st.what + ", " + files + ": " + name }
			rows = append(rows, timeOf(of("answers a PING"), "ready"+st.suffix, sysFTFS))
			r := timeOf(of("lists a directory"), "first-list"+st.suffix, sysFTFS)
			r.Note = "from the launch; the first request, while the files index may still be loading"
			rows = append(rows, r)
			r = timeOf(of("files index loaded"), "index"+st.suffix, sysFTFS)
			var own, cpuP, cpuB []float64
			for _, s := range pick("index"+st.suffix, sysFTFS) {
				own = append(own, s.StepMS...)
				cpuP, cpuB = append(cpuP, s.CPU["primary"]), append(cpuB, s.CPU["broker1"])
			}
			r.Note = fmt.Sprintf("from the launch; the server's own figure, from its watch's start: %.0f ms; CPU meanwhile: primary %.1f s, broker %.1f s (medians)", median(own), median(cpuP), median(cpuB))
			if st.suffix != "" {
				// The "starts in seconds" is of a restart: a
				// first start has no snapshot to read.
				r.Alt, r.AltValue, r.Target, r.TargetText = "bound", scaleStartBound, 1, fmt.Sprintf("≤ %d s", scaleStartBound)
				r.Ratio = ratio(r.FTFS, r.AltValue)
				r.judge()
			}
			rows = append(rows, r)
		}
		// Memory.
		var after, peak, broker, cli int64
		for _, s := range append(pick("rss", sysFTFS), pick("rss-snapshot", sysFTFS)...) {
			after, peak, broker = max(after, s.RSS["primary"]), max(peak, s.RSS["primary peak"]), max(broker, s.RSS["broker1"])
		}
		for _, s := range pick("rss-lists", sysFTFS) {
			peak = max(peak, s.RSS["primary peak"])
		}
		for _, s := range pick("list", sysCLI) {
			cli = max(cli, s.RSS["cli"])
		}
		for _, m := range []struct {
			name string
			v    int64
			note string
		}{
			{"RSS, primary with " + files + " (index loaded)", after, "VmRSS once the start settled"},
			{"peak RSS, primary with " + files, peak, "VmHWM over its start and every listing"},
		} {
			if m.v == 0 {
				continue
			}
			r := Row{Name: m.name, Unit: "MiB", FTFS: float64(m.v) / (1 << 20), Alt: "bound", AltValue: scaleRSSBound >> 20,
				Target: 1, TargetText: fmt.Sprintf("≤ %d MiB", scaleRSSBound>>20), Note: m.note}
			r.Ratio = ratio(r.FTFS, r.AltValue)
			r.judge()
			rows = append(rows, r)
		}
		if broker > 0 {
			rows = append(rows, Row{Name: "RSS, broker with " + files, Unit: "MiB", FTFS: float64(broker) / (1 << 20), Note: "for reference: JetStream's own index of the stream"})
		}
		// Listings, against the object store's List (in process), which
		// reads every meta whatever the prefix.
		for _, l := range []struct{ name, op, system string }{
			{"list " + files + " (Go client)", "list", sysFTFS},
			{"list " + files + " (ftfs ls)", "list", sysCLI},
			{fmt.Sprintf("list %d of %s (Go client)", scaleDir, files), "list-dir", sysFTFS},
			{fmt.Sprintf("list %d of %s (ftfs ls)", scaleDir, files), "list-dir", sysCLI},
		} {
			r := timeOf(l.name, l.op, l.system)
			xs, runs := seconds(pick(l.op, sysDirect))
			r.Alt, r.AltValue, r.AltRuns = sysDirect+" List", median(xs), runs
			r.Ratio = ratio(r.FTFS, r.AltValue)
			if l.op == "list" && l.system == sysFTFS {
				r.Target, r.TargetText = targetList, fmt.Sprintf("≤ %.2g", targetList)
				r.judge()
			}
			rows = append(rows, r)
		}
		if cli > 0 {
			rows = append(rows, Row{Name: "peak RSS, ftfs ls of " + files, Unit: "MiB", FTFS: float64(cli) / (1 << 20), Note: "VmHWM of the CLI"})
		}
	}
	return rows
}
