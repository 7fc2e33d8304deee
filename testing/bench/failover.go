package main

import (
	"fmt"
	"io"
	"time"

	"github.com/ftfs/ftfs/client"
)

// failover puts and gets the large file through the Go client while the
// file server serving it is killed (SIGKILL) halfway through: for a put,
// the server that opened the upload (a direct upload's chunks go into
// storage without it; it would answer the commit); for a get (any server
// can serve any batch, JetStream sends the chunks), the primary and the
// backup in turn.
// The killed server is restarted afterwards. The undisturbed reference is
// the large phase's; without it, this phase measures one per run.
func (b *bench) failover() {
	for run := 1; run <= b.cfg.Runs; run++ {
		if !b.cfg.has("large") {
			ref := fmt.Sprintf("large/%d.bin", run)
			b.putLarge("large", run, sysFTFS, ref)
			b.getLarge("large", run, sysFTFS, ref)
			b.dropLarge(ref, false)
		}
		name := fmt.Sprintf("failover/%d.bin", run)
		b.putKilled(run, name)
		b.getKilled(run, name, []string{"primary", "backup"}[(run-1)%2])
		b.dropLarge(name, false)
	}
}

// kill is a kill made during a transfer.
type kill struct {
	role string
	at   time.Duration // since the transfer started
	took time.Duration // until the process was gone (part of the transfer's time)
}

// halfway calls fire once more than half of the large file has passed
// through a reader or writer of the transfer: on the transfer's own
// goroutine, so that the kill lands in the middle of it whatever the size
// (progress callbacks come only every 100 ms).
type halfway struct {
	n, half int64
	fire    func()
}

func (h *halfway) pass(n int) {
	before := h.n
	h.n += int64(n)
	if before <= h.half && h.n > h.half {
		h.fire()
	}
}

type countingReader struct {
	r io.Reader
	h *halfway
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.pass(n)
	return n, err
}

type countingWriter struct {
	w io.Writer
	h *halfway
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.pass(n)
	return n, err
}

// kill kills a file server now, during a transfer that started at start,
// and waits until it is gone.
func (b *bench) kill(start time.Time, role string) *kill {
	k := &kill{role: role, at: time.Since(start)}
	if role != "" {
		b.sys.Kill(b.tb, role)
	}
	k.took = time.Since(start) - k.at
	return k
}

// putKilled puts the large file and kills the server that opened the
// upload halfway: the one named by the last progress report, which comes
// with the first acknowledged chunk, long before half of the file is read
// (the client reads one window ahead of the acknowledgements).
func (b *bench) putKilled(run int, name string) {
	roles := b.sys.Instances(b.tb, b.sys.FrontConn(b.tb)) // instance ID -> role, before the clock starts
	f := b.openBig()
	defer f.Close()
	ctx, cancel := b.ctx()
	defer cancel()
	var last client.Progress
	var k *kill
	start := time.Now()
	h := &halfway{half: b.cfg.Size / 2, fire: func() { k = b.kill(start, roles[last.Instance]) }}
	w := watchResume(&last)
	fi, err := b.ftfs.c.Put(ctx, name, countingReader{f, h}, b.cfg.Size, client.OnProgress(w.progress))
	took := time.Since(start)
	if err == nil && fi.Digest != b.bigDigest {
		err = fmt.Errorf("stored digest %s, want %s", fi.Digest, b.bigDigest)
	}
	b.recordKilled(run, "put", took, err, k, last, w.since(start, k))
	if err == nil {
		b.settle("backup replica of "+name, b.replicaHas(name, b.cfg.Size))
	} else {
		b.settle("failed put", nil)
	}
}

// getKilled gets the file and kills victim halfway.
func (b *bench) getKilled(run int, name, victim string) {
	ctx, cancel := b.ctx()
	defer cancel()
	var last client.Progress
	var k *kill
	start := time.Now()
	h := &halfway{half: b.cfg.Size / 2, fire: func() { k = b.kill(start, victim) }}
	w := watchResume(&last)
	fi, err := b.ftfs.c.Get(ctx, name, countingWriter{io.Discard, h}, client.OnProgress(w.progress))
	took := time.Since(start)
	if err == nil && fi.Size != b.cfg.Size {
		err = fmt.Errorf("got %d bytes, want %d", fi.Size, b.cfg.Size)
	}
	b.recordKilled(run, "get", took, err, k, last, w.since(start, k))
	b.settle("failover get", nil)
}

// resumeWatch keeps a transfer's last progress and notes when the first
// progress after a failover came: the transfer moving again.
type resumeWatch struct {
	last    *client.Progress
	resumed time.Time
}

func watchResume(last *client.Progress) *resumeWatch { return &resumeWatch{last: last} }

// progress is the transfer's progress callback. Progress is reported at
// most every 100 ms, but the first report after a stall comes with the
// first chunk that moves: the stall is longer than that.
func (w *resumeWatch) progress(p client.Progress) {
	*w.last = p
	if p.Failovers > 0 && w.resumed.IsZero() {
		w.resumed = time.Now()
	}
}

// since is the time from the kill to the resumption, 0 when there was
// none.
func (w *resumeWatch) since(start time.Time, k *kill) time.Duration {
	if k == nil || w.resumed.IsZero() {
		return 0
	}
	return w.resumed.Sub(start.Add(k.at))
}

// recordKilled records a transfer with a kill, waits until the killed
// server is gone and starts it again.
func (b *bench) recordKilled(run int, op string, took time.Duration, err error, k *kill, last client.Progress, resumed time.Duration) {
	s := Sample{Phase: "failover", Op: op, System: sysFTFS, Run: run, Bytes: b.cfg.Size, Seconds: took.Seconds(),
		Err: errText(err), Failovers: last.Failovers, Resent: last.Resent, ResumeSeconds: resumed.Seconds()}
	switch {
	case k == nil:
		s.Err = fmt.Sprintf("the %s ended before half of it was done: nothing was killed (%s)", op, errText(err))
	case k.role == "":
		s.Err = "the server that opened the upload is not a known instance: nothing was killed"
	default:
		s.Killed, s.KilledAt, s.KillSeconds = k.role, k.at.Seconds(), k.took.Seconds()
	}
	b.add(s)
	b.logf("failover run %d: ftfs %s %s: %s", run, op, sizeText(b.cfg.Size), describe(s))
	if s.Killed != "" {
		b.sys.Restart(b.tb, s.Killed)
	}
}
