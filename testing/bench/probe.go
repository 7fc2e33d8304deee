package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// The probe phase measures what bounds ftfs, rather than ftfs itself:
//
//   - how fast JetStream stores the large file in ftfs's chunks (512 KiB)
//     when each is stored only after the previous one's acknowledgement,
//     as the file server holding an upload does (chained with an expected
//     last sequence and a message ID, as it does), against 8 in flight;
//     and, as ftfs does it, relayed: a client keeps 8 chunks in flight to
//     a relay (a connection of its own standing for the file server) that
//     hashes and stores each one after the other and then acknowledges it;
//   - how much of a download is spent waiting: an ftfs download asks for
//     one batch of 16 chunks after the other, each request going through a
//     file server; the probe makes the same requests at the wire level and
//     times each batch's first chunk and its end;
//   - the time of each step of an upload (open, chunks, commit), made
//     at the wire level, for files of 4 KiB, 1 MiB, 15 and 16 chunks: a
//     commit rolls the upload forward from its last checkpoint (every 16
//     chunks), so the sizes around a checkpoint tell what that costs;
//   - a census of the messages one small file's put, get, list and delete
//     cause on the broker, through ftfs and through the object store,
//     counted by a subscription to every subject of the account. It counts
//     whatever else happened meanwhile too (the backup's replica copying
//     the new files, the servers' watches, keepalives): the probe keeps
//     those apart by their subjects as far as it can, and says so.

// probeStream is the scratch stream of the chunk probe.
const probeStream = "bench-probe"

// Census is the messages one operation caused, per operation, by kind.
type Census struct {
	System string             `json:"system"`
	Op     string             `json:"op"`
	Files  int                `json:"files"`
	PerOp  map[string]float64 `json:"per_op"` // kind of message -> messages per operation
}

func (b *bench) probe() {
	b.probeChunks()
	b.probeDownload()
	b.probePutSteps()
	b.probeCensus()
}

// probeChunks stores the large file's worth of 512 KiB messages into a
// scratch stream one at a time and with 8 in flight, -runs times each.
func (b *bench) probeChunks() {
	nc := b.serviceConn()
	js, err := jetstream.New(nc)
	if err != nil {
		b.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The relay's input subjects (.in) are under bench.probe too: a stream
	// ignores what it is not asked to store, so only the chunks are stored.
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: probeStream, Subjects: []string{"bench.probe.*.*"},
		Storage: jetstream.FileStorage, Replicas: 1, Duplicates: 2 * time.Minute})
	if err != nil {
		b.tb.Fatalf("probe stream: %v", err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), probeStream) }()
	chunk := ftfstest.RandomBytes(subjects.ChunkSize)
	n := int((b.cfg.Size + subjects.ChunkSize - 1) / subjects.ChunkSize)
	for run := 1; run <= b.cfg.Runs; run++ {
		for _, system := range rotate([]string{probeOne, probeWindow, probeRelay, probeRelayWindow}, run-1) {
			ctx, cancel := b.ctx()
			subject := fmt.Sprintf("bench.probe.%d.%s", run, system)
			var perChunk []float64
			took, err := timed(func() (err error) {
				switch system {
				case probeOne:
					perChunk, err = publishChained(ctx, js, subject, chunk, n)
					return err
				case probeWindow:
					return publishWindow(ctx, js, subject, chunk, n, subjects.UploadWindow)
				}
				if system == probeRelayWindow {
					return b.publishRelayedWindow(ctx, nc, js, subject, chunk, n)
				}
				return b.publishRelayed(ctx, nc, js, subject, chunk, n)
			})
			cancel()
			s := b.add(Sample{Phase: "probe", Op: "publish", System: system, Run: run, Bytes: int64(n) * subjects.ChunkSize,
				Seconds: took.Seconds(), Err: errText(err), StepMS: perChunk})
			extra := ""
			if len(perChunk) > 0 {
				extra = fmt.Sprintf("; one chunk stored every %.2f ms (median)", median(perChunk))
			}
			b.logf("probe run %d: %d×%s to JetStream, %s: %s%s", run, n, sizeText(subjects.ChunkSize), system, describe(s), extra)
			ctx, cancel = b.ctx()
			if err := stream.Purge(ctx); err != nil {
				b.tb.Errorf("purge the probe stream: %v", err)
			}
			cancel()
			b.settle("probe publish", nil)
		}
	}
}

// The probe's ways of storing chunks.
const (
	probeOne    = "jetstream-one-at-a-time"
	probeWindow = "jetstream-8-in-flight"
	probeRelay  = "relayed-one-at-a-time"
	// probeRelayWindow is the relay storing 8 chunks at a time, each
	// fenced (Nats-Expected-Last-Subject-Sequence on one of 8 fence
	// subjects, as a holder that can be deposed would need): what a
	// pipelined file server could reach.
	probeRelayWindow = "relayed-8-in-flight"
)

// publishRelayedWindow is publishRelayed with the relay keeping as many
// stores in flight as the client keeps chunks, each checked against a
// fence subject of its own.
func (b *bench) publishRelayedWindow(ctx context.Context, relay *nats.Conn, js jetstream.JetStream, subject string, chunk []byte, n int) error {
	fences := make([]string, subjects.UploadWindow)
	fenceSeqs := make([]uint64, subjects.UploadWindow)
	for i := range fences {
		fences[i] = subject + "-fence" + strconv.Itoa(i)
		ack, err := js.Publish(ctx, fences[i], nil)
		if err != nil {
			return fmt.Errorf("fence: %w", err)
		}
		fenceSeqs[i] = ack.Sequence
	}
	type pending struct {
		ack jetstream.PubAckFuture
		in  *nats.Msg
	}
	queue := make(chan pending, subjects.UploadWindow)
	done := make(chan struct{})
	go func() { // owned here: ends when queue closes
		defer close(done)
		h := sha256.New()
		for p := range queue {
			select {
			case <-p.ack.Ok():
				h.Write(p.in.Data)
				_ = p.in.Respond(nil)
			case err := <-p.ack.Err():
				_ = p.in.Respond([]byte(err.Error()))
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { close(queue); <-done }()
	var i int
	sub, err := relay.Subscribe(subject+".in", func(m *nats.Msg) {
		out := nats.NewMsg(subject)
		out.Data = m.Data
		f := i % len(fences)
		out.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(fenceSeqs[f], 10))
		out.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", fences[f])
		i++
		ack, err := js.PublishMsgAsync(out)
		if err != nil {
			_ = m.Respond([]byte(err.Error()))
			return
		}
		queue <- pending{ack, m}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := relay.Flush(); err != nil {
		return err
	}
	return sendWindowed(ctx, b.serviceConn(), subject+".in", chunk, n)
}

// publishRelayed has a client connection send n chunks, 8 in flight, to a
// relay on another connection that stores them one at a time as
// publishChained does, hashing each (SHA-256), and acknowledges each once
// stored: the path of an ftfs upload, without the rest of ftfs.
func (b *bench) publishRelayed(ctx context.Context, relay *nats.Conn, js jetstream.JetStream, subject string, chunk []byte, n int) error {
	nc := b.serviceConn()
	h := sha256.New()
	var last uint64
	var i int
	sub, err := relay.Subscribe(subject+".in", func(m *nats.Msg) {
		out := nats.NewMsg(subject)
		out.Data = m.Data
		out.Header.Set(jetstream.MsgIDHeader, subject+"."+strconv.Itoa(i))
		out.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		i++
		ack, err := js.PublishMsg(ctx, out)
		if err != nil {
			_ = m.Respond([]byte(err.Error()))
			return
		}
		h.Write(m.Data)
		last = ack.Sequence
		_ = m.Respond(nil)
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := relay.Flush(); err != nil {
		return err
	}
	return sendWindowed(ctx, nc, subject+".in", chunk, n)
}

// sendWindowed sends n chunks to subject keeping 8 in flight, as an ftfs
// client does, each answered by an empty message or an error text.
func sendWindowed(ctx context.Context, nc *nats.Conn, subject string, chunk []byte, n int) error {
	acks := make(chan *nats.Msg, n)
	inbox := nc.NewInbox()
	asub, err := nc.ChanSubscribe(inbox, acks)
	if err != nil {
		return err
	}
	defer func() { _ = asub.Unsubscribe() }()
	inFlight := 0
	for sent := 0; sent < n || inFlight > 0; {
		for inFlight < subjects.UploadWindow && sent < n {
			if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: inbox, Data: chunk}); err != nil {
				return err
			}
			sent++
			inFlight++
		}
		select {
		case m := <-acks:
			if len(m.Data) > 0 {
				return fmt.Errorf("relay: %s", m.Data)
			}
			inFlight--
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// publishChained stores n chunks one at a time, each naming the sequence
// of the previous one, as the file server holding an upload stores them,
// and returns each one's time in milliseconds.
func publishChained(ctx context.Context, js jetstream.JetStream, subject string, chunk []byte, n int) ([]float64, error) {
	var last uint64
	times := make([]float64, 0, n)
	for i := range n {
		m := nats.NewMsg(subject)
		m.Data = chunk
		m.Header.Set(jetstream.MsgIDHeader, subject+"."+strconv.Itoa(i))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		start := time.Now()
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			return times, fmt.Errorf("chunk %d: %w", i, err)
		}
		times = append(times, ms(time.Since(start)))
		last = ack.Sequence
	}
	return times, nil
}

// publishWindow stores n chunks keeping window of them in flight.
func publishWindow(ctx context.Context, js jetstream.JetStream, subject string, chunk []byte, n, window int) error {
	acks := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		for len(acks) >= window {
			if err := waitAck(ctx, acks[0]); err != nil {
				return fmt.Errorf("chunk %d: %w", i-len(acks), err)
			}
			acks = acks[1:]
		}
		m := nats.NewMsg(subject)
		m.Data = chunk
		m.Header.Set(jetstream.MsgIDHeader, subject+"."+strconv.Itoa(i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		if err := waitAck(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

func waitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// probeDownload puts the large file through ftfs and downloads it -runs
// times the way the client does, batch after batch, at the wire level.
func (b *bench) probeDownload() {
	const name = "probe/large.bin"
	b.putLarge("probe", 0, sysFTFS, name)
	ctx, cancel := b.ctx()
	fi, err := b.ftfs.c.Stat(ctx, name)
	cancel()
	if err != nil {
		b.tb.Fatalf("probe: %v", err)
	}
	for run := 1; run <= b.cfg.Runs; run++ {
		ctx, cancel := b.ctx()
		var waits []float64
		took, err := timed(func() (err error) {
			waits, err = b.downloadBatches(ctx, fi)
			return err
		})
		cancel()
		s := b.add(Sample{Phase: "probe", Op: "download", System: probeBatches, Run: run, Bytes: fi.Size,
			Seconds: took.Seconds(), Err: errText(err), StepMS: waits})
		var waited float64
		for _, w := range waits {
			waited += w
		}
		b.logf("probe run %d: download in %d batches: %s; %.0f%% of it waiting for each batch's first chunk (median %.2f ms)",
			run, len(waits), describe(s), 100*waited/1000/s.Seconds, median(waits))
		b.settle("probe download", nil)
	}
	b.dropLarge(name, false)
}

// probeBatches names the download probe's samples.
const probeBatches = "ftfs-batches"

// downloadBatches downloads a file as client.Get does, without its
// failover and checks, and returns how long each batch waited for its
// first chunk (milliseconds): the file server's part in a download.
func (b *bench) downloadBatches(ctx context.Context, fi client.FileInfo) ([]float64, error) {
	nc := b.ftfs.c.Conn()
	prefix := nc.NewInbox() // in the user's inbox, as the server requires
	msgs := make(chan *nats.Msg, 2*subjects.DownloadBatch+8)
	sub, err := nc.ChanSubscribe(prefix+".*", msgs)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	var waits []float64
	var after uint64
	var done int64
	for batch := 1; done < fi.Size; batch++ {
		reply := prefix + "." + strconv.Itoa(batch)
		m := nats.NewMsg(subjects.For(b.ftfs.c.User(), subjects.Download))
		m.Reply = reply
		m.Header.Set(subjects.HeaderSession, b.ftfs.c.Token())
		m.Data, _ = json.Marshal(subjects.DownloadRequest{Name: fi.Name, Version: fi.Version, After: after, Offset: done, Max: subjects.DownloadBatch})
		start := time.Now()
		if err := nc.PublishMsg(m); err != nil {
			return waits, err
		}
		for first := true; ; {
			var in *nats.Msg
			select {
			case in = <-msgs:
			case <-ctx.Done():
				return waits, ctx.Err()
			}
			if in.Subject != reply {
				continue
			}
			if code := in.Header.Get(subjects.HeaderErrorCode); code != "" {
				return waits, fmt.Errorf("batch %d: %s: %s", batch, code, in.Header.Get(subjects.HeaderErrorText))
			}
			if first {
				waits = append(waits, ms(time.Since(start)))
				first = false
			}
			if st := in.Header.Get(subjects.HeaderStatus); st == "204" {
				break
			} else if st != "" {
				return waits, fmt.Errorf("batch %d: status %s", batch, st)
			}
			seq, err := strconv.ParseUint(in.Header.Get(subjects.HeaderStreamSeq), 10, 64)
			if err != nil {
				return waits, fmt.Errorf("batch %d: chunk without a stream sequence", batch)
			}
			after, done = seq, done+int64(len(in.Data))
			if done >= fi.Size {
				break
			}
		}
	}
	return waits, nil
}

// putStepSizes are the file sizes the put-steps probe uploads, each
// 5×-runs times.
var putStepSizes = []int64{4 << 10, 1 << 20, 15 * subjects.ChunkSize, 16 * subjects.ChunkSize}

// probePutSteps uploads files of putStepSizes at the wire level and times
// open, chunks (all of them acknowledged) and commit.
func (b *bench) probePutSteps() {
	repeats := 5 * b.cfg.Runs
	for _, size := range putStepSizes {
		data := ftfstest.RandomBytes(int(size))
		digest := ftfstest.Digest(data)
		steps := map[string][]float64{}
		for i := range repeats {
			name := fmt.Sprintf("probe/steps/%d/%d", size, i)
			ctx, cancel := b.ctx()
			err := b.putSteps(ctx, name, data, digest, steps)
			cancel()
			if err != nil {
				b.tb.Errorf("probe: put steps of %s: %v", name, err)
				break
			}
		}
		for _, step := range []string{"open", "chunks", "commit"} {
			b.add(Sample{Phase: "probe", Op: "put-" + step, System: sysFTFS, Bytes: size, Files: len(steps[step]), StepMS: steps[step]})
		}
		b.logf("probe: put steps of %s: open %.1f ms, chunks %.1f ms, commit %.1f ms (medians of %d)",
			stepSize(size), median(steps["open"]), median(steps["chunks"]), median(steps["commit"]), len(steps["commit"]))
		b.settle("probe put steps", b.replicaCount(fmt.Sprintf("probe/steps/%d", size), len(steps["commit"])))
	}
	ctx, cancel := b.ctx()
	defer cancel()
	for _, size := range putStepSizes {
		for i := range repeats {
			if err := b.ftfs.del(ctx, fmt.Sprintf("probe/steps/%d/%d", size, i)); err != nil {
				b.tb.Errorf("probe: %v", err)
			}
		}
	}
	b.settle("probe put steps deleted", nil)
	b.compact()
}

// stepSize names a size of putStepSizes: 4KiB, 1MiB, 15-chunk (7.5 MiB).
func stepSize(n int64) string {
	if n < 2<<20 {
		return sizeText(n)
	}
	return fmt.Sprintf("%d-chunk (%.1f MiB)", n/subjects.ChunkSize, float64(n)/(1<<20))
}

// putSteps uploads data as the client does, one step after the other,
// and adds each step's time (milliseconds) to steps.
func (b *bench) putSteps(ctx context.Context, name string, data []byte, digest string, steps map[string][]float64) error {
	var st subjects.UploadState
	took, err := timed(func() error {
		return b.wireRequest(ctx, subjects.UploadOpen, subjects.UploadOpenRequest{Name: name, Size: int64(len(data)), Overwrite: true}, &st)
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	steps["open"] = append(steps["open"], ms(took))
	nc := b.ftfs.c.Conn()
	acks := make(chan *nats.Msg, 64)
	inbox := nc.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, acks)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	n := (len(data) + st.ChunkSize - 1) / st.ChunkSize
	took, err = timed(func() error {
		for k := range n {
			// All at once: the largest file here is 16 chunks, and the
			// holder queues twice its 8-chunk window.
			m := nats.NewMsg(subjects.For(b.ftfs.c.User(), subjects.Chunk(st.Instance)))
			m.Reply = inbox
			m.Header.Set(subjects.HeaderUpload, st.Upload)
			m.Header.Set(subjects.HeaderChunk, strconv.Itoa(k))
			m.Data = data[k*st.ChunkSize : min((k+1)*st.ChunkSize, len(data))]
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
		}
		for range n {
			select {
			case m := <-acks:
				if code := m.Header.Get(subjects.HeaderErrorCode); code != "" {
					return fmt.Errorf("chunk: %s: %s", code, m.Header.Get(subjects.HeaderErrorText))
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	steps["chunks"] = append(steps["chunks"], ms(took))
	took, err = timed(func() error {
		// To the holder, as the client sends it: on the other server a
		// commit takes the upload over first (some 30 ms here).
		return b.wireRequest(ctx, subjects.UploadCommitAt(st.Instance), subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digest}, nil)
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	steps["commit"] = append(steps["commit"], ms(took))
	return nil
}

// wireRequest makes one request of the bench user, skipping keepalives.
func (b *bench) wireRequest(ctx context.Context, subject string, body, reply any) error {
	nc := b.ftfs.c.Conn()
	inbox := nc.NewInbox()
	replies := make(chan *nats.Msg, 8)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	m := nats.NewMsg(subjects.For(b.ftfs.c.User(), subject))
	m.Reply = inbox
	m.Header.Set(subjects.HeaderSession, b.ftfs.c.Token())
	if m.Data, err = json.Marshal(body); err != nil {
		return err
	}
	if err := nc.PublishMsg(m); err != nil {
		return err
	}
	for {
		select {
		case r := <-replies:
			switch {
			case r.Header.Get(subjects.HeaderStatus) == "100":
				continue // a keepalive
			case r.Header.Get(subjects.HeaderStatus) != "":
				return fmt.Errorf("status %s", r.Header.Get(subjects.HeaderStatus))
			case r.Header.Get(subjects.HeaderErrorCode) != "":
				return fmt.Errorf("%s: %s", r.Header.Get(subjects.HeaderErrorCode), r.Header.Get(subjects.HeaderErrorText))
			}
			if reply != nil {
				return json.Unmarshal(r.Data, reply)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// censusFiles is how many small files the census moves through each
// system, one at a time (fewer when -small-count is smaller).
const censusFiles = 100

// probeCensus counts the messages of censusFiles small puts and gets, one
// listing of them and their deletes, one client, one operation at a time.
func (b *bench) probeCensus() {
	n := min(censusFiles, b.cfg.SmallCount)
	content := ftfstest.RandomBytes(int(b.cfg.SmallSize))
	for _, system := range []string{sysFTFS, sysDirect} {
		var s store = b.ftfs
		if system == sysDirect {
			s = b.direct
		}
		name := func(i int) string { return fmt.Sprintf("census/%s/%03d", system, i) }
		ops := []struct {
			op    string
			count int
			do    func(ctx context.Context, i int) error
		}{
			{"put", n, func(ctx context.Context, i int) error {
				return s.put(ctx, name(i), bytes.NewReader(content), int64(len(content)))
			}},
			{"get", n, func(ctx context.Context, i int) error {
				_, err := s.get(ctx, name(i), io.Discard)
				return err
			}},
			{"list", 1, func(ctx context.Context, _ int) error {
				_, err := s.list(ctx, "census/")
				return err
			}},
			{"delete", n, func(ctx context.Context, i int) error { return s.del(ctx, name(i)) }},
		}
		for _, o := range ops {
			c := b.count(func(ctx context.Context) error {
				for i := range o.count {
					if err := o.do(ctx, i); err != nil {
						return err
					}
				}
				return nil
			})
			c.System, c.Op, c.Files = system, o.op, o.count
			for k, v := range c.PerOp {
				c.PerOp[k] = v / float64(o.count)
			}
			b.res.Census = append(b.res.Census, c)
			b.logf("census: %s %s: %s", system, o.op, censusLine(c))
			if system == sysFTFS && o.op == "put" {
				b.settle("backup replica of census/", b.replicaCount("census/"+system, n))
			} else {
				b.settle("census", nil)
			}
		}
	}
}

// censusSubjects are what the census subscribes to: every subject of the
// account but ftfs.control.>, where a file server taking an upload over
// asks its holder to let go and takes "no responders" for "nobody holds
// it". Any subscription there, even one that never answers, makes that
// request wait out its 500 ms timeout: a subscription to ">" slows every
// commit by half a second. The census leaves those requests out (one per
// commit). Storage is one account, the requests another (subjects.Account,
// UsersAccount): the census listens in both, storage as the operator, the
// requests as a front connection, which may not read users' inboxes, so
// replies to users are not counted.
var (
	censusStorageSubjects  = []string{"ftfs.events.>", "$KV.>", "$O.>", "$JS.>", "_INBOX.>", "_R_.>"}
	censusRequestsSubjects = []string{subjects.Prefix + ".>", "$SRV.>", "_INBOX.>"}
)

// count runs do while subscriptions count the messages of the account
// by kind, and waits a little for the stragglers.
func (b *bench) count(do func(context.Context) error) Census {
	var mu sync.Mutex
	counts := map[string]float64{}
	var subs []*nats.Subscription
	for _, on := range []struct {
		nc       *nats.Conn
		subjects []string
	}{{b.serviceConn(), censusStorageSubjects}, {b.sys.FrontConn(b.tb), censusRequestsSubjects}} {
		for _, subject := range on.subjects {
			sub, err := on.nc.Subscribe(subject, func(m *nats.Msg) {
				k := messageKind(m.Subject, m.Reply)
				mu.Lock()
				counts[k]++
				mu.Unlock()
			})
			if err != nil {
				b.tb.Fatal(err)
			}
			subs = append(subs, sub)
		}
		if err := on.nc.Flush(); err != nil {
			b.tb.Fatal(err)
		}
	}
	ctx, cancel := b.ctx()
	err := do(ctx)
	cancel()
	if err != nil {
		b.tb.Errorf("census: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // let the last replies arrive
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	mu.Lock()
	defer mu.Unlock()
	return Census{PerOp: counts}
}

// messageKind sorts a message into the kinds the census reports, by its
// subject and reply subject. A consumer's deliveries keep the subject
// they were stored under; their reply subject tells them apart.
func messageKind(subject, reply string) string {
	t := strings.Split(subject, ".")
	switch {
	case strings.HasPrefix(reply, "$JS.ACK."):
		return "consumer delivery"
	case subjects.UserOf(subject) != "":
		// ftfs.v1.<user>.<request>: the request without its user
		request := strings.TrimPrefix(subject, subjects.Prefix+"."+subjects.UserOf(subject)+".")
		if strings.HasPrefix(request, "chunk.") {
			return "ftfs request: chunk"
		}
		return "ftfs request: " + request
	case strings.HasPrefix(subject, "ftfs."):
		return "ftfs internal: " + strings.Join(t[1:min(len(t), 4)], ".")
	case t[0] == "$KV" && len(t) > 1:
		return "KV write: " + t[1]
	case t[0] == "$O" && len(t) > 2 && t[2] == "C":
		return "object store chunk write"
	case t[0] == "$O" && len(t) > 2 && t[2] == "M":
		return "object store meta write"
	case strings.HasPrefix(subject, "$JS.API.DIRECT.GET."):
		return "JetStream direct get"
	case strings.HasPrefix(subject, "$JS.API.") && len(t) > 3:
		verb := t[2] + "." + t[3]
		if t[2] == "STREAM" && len(t) > 4 && t[3] == "MSG" {
			verb += "." + t[4]
		}
		return "JetStream API: " + verb
	case strings.HasPrefix(subject, "$JS.ACK."):
		return "consumer ack"
	case strings.HasPrefix(subject, "$JS.FC."):
		return "consumer flow control"
	case strings.HasPrefix(subject, "$JS.EVENT."):
		return "JetStream advisory"
	case strings.HasPrefix(subject, "$SRV."):
		return "service discovery"
	case strings.HasPrefix(subject, "_INBOX.") || strings.HasPrefix(subject, subjects.InboxRoot+".") || strings.HasPrefix(subject, "_R_."):
		return "reply or delivery to an inbox"
	}
	return "other: " + t[0]
}

// censusLine is a census on one line, the most frequent kinds first.
func censusLine(c Census) string {
	kinds := make([]string, 0, len(c.PerOp))
	var total float64
	for k, v := range c.PerOp {
		kinds = append(kinds, k)
		total += v
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if c.PerOp[a] != c.PerOp[b] {
			if c.PerOp[a] > c.PerOp[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := []string{fmt.Sprintf("%.1f messages per operation", total)}
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, c.PerOp[k]))
	}
	return strings.Join(parts, "; ")
}
