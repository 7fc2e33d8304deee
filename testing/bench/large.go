package main

import (
	"fmt"
	"io"
	"time"
)

// large puts and gets the large file through ftfs's Go client, the
// direct object store and sftp, -runs times, each run in a rotated order.
// The servers' RSS is sampled during the ftfs transfers.
func (b *bench) large() {
	systems := []string{sysFTFS, sysDirect}
	if b.sftp != nil {
		systems = append(systems, sysSFTP)
	}
	b.settle("the large file's writing", nil) // the first put must not pay for it
	for run := 1; run <= b.cfg.Runs; run++ {
		name := fmt.Sprintf("large/%d.bin", run)
		order := rotate(systems, run-1)
		for _, system := range order {
			b.putLarge("large", run, system, name)
		}
		for _, system := range order {
			b.getLarge("large", run, system, name)
		}
		b.dropLarge(name, true)
	}
}

// putLarge puts the large file as name, trying a failed put again up to
// -retries times; every attempt is a sample.
func (b *bench) putLarge(phase string, run int, system, name string) {
	for attempt := 1; attempt <= 1+b.cfg.Retries; attempt++ {
		s := b.putLargeOnce(system, name)
		s.Phase, s.Run, s.Attempt = phase, run, attempt
		b.add(s)
		b.logf("%s run %d: %s put %s: %s", phase, run, system, sizeText(b.cfg.Size), describe(s))
		if system == sysFTFS && s.ok() {
			b.settle("backup replica of "+name, b.replicaHas(name, b.cfg.Size))
		} else {
			b.settle(system+" put", nil)
		}
		if s.ok() {
			return
		}
	}
}

func (b *bench) putLargeOnce(system, name string) Sample {
	s := Sample{Op: "put", System: system, Bytes: b.cfg.Size}
	f := b.openBig()
	defer f.Close()
	ctx, cancel := b.ctx()
	defer cancel()
	rss := b.sampleServers(system)
	took, err := timed(func() error {
		switch system {
		case sysFTFS:
			fi, err := b.ftfs.c.Put(ctx, name, f, b.cfg.Size)
			if err == nil && fi.Digest != b.bigDigest {
				err = fmt.Errorf("stored digest %s, want %s", fi.Digest, b.bigDigest)
			}
			return err
		case sysDirect:
			return b.direct.put(ctx, name, f, b.cfg.Size)
		default:
			return b.sftp.put(ctx, b.bigFile, name)
		}
	})
	s.RSS = rss.finish()
	s.Seconds, s.Err = took.Seconds(), errText(err)
	return s
}

// getLarge gets name once: every system checks the content's digest
// (sftp excepted: it has none; its size is checked).
func (b *bench) getLarge(phase string, run int, system, name string) {
	s := Sample{Phase: phase, Op: "get", System: system, Run: run, Bytes: b.cfg.Size}
	ctx, cancel := b.ctx()
	defer cancel()
	rss := b.sampleServers(system)
	took, err := timed(func() error {
		var n int64
		var err error
		switch system {
		case sysFTFS:
			n, err = b.ftfs.get(ctx, name, io.Discard)
		case sysDirect:
			n, err = b.direct.get(ctx, name, io.Discard)
		default:
			n, err = b.sftp.get(ctx, name)
		}
		if err == nil && n != b.cfg.Size {
			err = fmt.Errorf("got %d bytes, want %d", n, b.cfg.Size)
		}
		return err
	})
	s.RSS = rss.finish()
	s.Seconds, s.Err = took.Seconds(), errText(err)
	b.add(s)
	b.logf("%s run %d: %s get %s: %s", phase, run, system, sizeText(b.cfg.Size), describe(s))
	b.settle(system+" get", nil)
}

// dropLarge deletes a large file from ftfs (and, with all, from the
// direct bucket and the sftp dir), and waits until its chunks are purged
// and the replica has let it go.
func (b *bench) dropLarge(name string, all bool) {
	ctx, cancel := b.ctx()
	defer cancel()
	if err := b.ftfs.del(ctx, name); err != nil {
		b.tb.Errorf("delete %s: %v", name, err)
	}
	if all {
		if err := b.direct.del(ctx, name); err != nil {
			b.tb.Errorf("delete %s from the direct bucket: %v", name, err)
		}
		if b.sftp != nil {
			b.sftp.remove(name)
		}
	}
	b.settle("delete of "+name, b.replicaHas(name, -1))
	b.compact()
}

// describe is a sample's outcome for the progress lines.
func describe(s Sample) string {
	if !s.ok() {
		return fmt.Sprintf("FAILED after %.2fs: %s", s.Seconds, s.Err)
	}
	out := fmt.Sprintf("%.2fs", s.Seconds)
	if s.Seconds < 0.1 {
		out = fmt.Sprintf("%.1fms", s.Seconds*1000)
	}
	if s.Files > 0 {
		out += fmt.Sprintf(" (%.0f files/s)", s.rate())
	} else if s.Bytes > 0 {
		out += fmt.Sprintf(" (%.0f MB/s)", s.rate())
	}
	if s.Killed != "" {
		out += fmt.Sprintf(", %s killed at %.2fs (in %.0fms), %d failovers, %s re-sent", s.Killed, s.KilledAt, s.KillSeconds*1000, s.Failovers, mib(s.Resent))
		if s.ResumeSeconds > 0 {
			out += fmt.Sprintf(", moving again %.2fs after the kill", s.ResumeSeconds)
		}
	}
	for _, p := range []string{"cli", "primary", "backup", "broker1"} {
		if v, ok := s.RSS[p]; ok {
			out += fmt.Sprintf(", %s %s", p, mib(v))
		}
	}
	return out
}

// since is the seconds from t0 to now.
func since(t0 time.Time) float64 { return time.Since(t0).Seconds() }
