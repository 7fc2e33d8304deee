package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// promptly bounds how long a refused transfer may take to fail: far less
// than a client's retry budget, so a refusal that is retried or stalls on
// fails the test.
const promptly = 10 * time.Second

// TestMaxFileSize checks that a file over --max-file-size is refused with
// ErrTooLarge whether its size is announced, unknown or announced wrongly,
// and that nothing of it stays: no file, no upload record, no chunk. A
// direct upload cannot send more than it announced: its client stops at
// the announced size (ErrIntegrity); a relayed one's server counts every
// chunk against the limit.
func TestMaxFileSize(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"),
		ftfstest.ServerArgs("--max-file-size", "2MiB"))
	sys.AddUser(t, "big")
	c := sys.Login(t, "big")
	relayed := sys.Login(t, "big", client.WithRelayedUploads())
	st := openStorage(t, sys)

	atLimit := sys.PutRandom(t, c, "big/max.bin", 2<<20)
	before := st.bytes(t)
	for _, tc := range []struct {
		name string
		size int64 // announced
		data int
		c    *client.Client
		want error
	}{
		{"big/announced.bin", 2<<20 + 1, 2<<20 + 1, c, client.ErrTooLarge},
		{"big/unknown.bin", -1, 3 << 20, c, client.ErrTooLarge},
		{"big/understated.bin", 1 << 20, 3 << 20, c, client.ErrIntegrity},
		{"big/understated.bin", 1 << 20, 3 << 20, relayed, client.ErrTooLarge},
	} {
		start := time.Now()
		_, err := tc.c.Put(ctxFor(t, 2*time.Minute), tc.name, bytes.NewReader(ftfstest.RandomBytes(tc.data)), tc.size)
		if !errors.Is(err, tc.want) {
			t.Fatalf("put %s (%d bytes, announced %d): %v; want %v", tc.name, tc.data, tc.size, err, tc.want)
		}
		if took := time.Since(start); took > promptly {
			t.Fatalf("put %s: %v after %v", tc.name, tc.want, took)
		}
		if tc.want == client.ErrTooLarge && !strings.Contains(err.Error(), "maximum file size of 2MiB") {
			t.Fatalf("put %s: the error does not name the limit: %v", tc.name, err)
		}
		if _, err := c.Stat(ctxFor(t, 30*time.Second), tc.name); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("stat %s after the refusal: %v; want ErrNotFound", tc.name, err)
		}
	}
	files, err := c.List(ctxFor(t, 30*time.Second), "big/")
	if err != nil || len(files) != 1 || files[0].Name != "big/max.bin" {
		t.Fatalf("list after the refusals: %v, %v; want big/max.bin alone", files, err)
	}
	st.cleanedUp(t, "big", before)
	ftfstest.SameBytes(t, atLimit, ftfstest.GetBytes(t, c, "big/max.bin"))
}

// TestUserQuota fills a user's --user-quota and checks that the next put is
// refused with ErrQuota (announced size at open, unknown size as chunks
// arrive), that overwriting one's own file counts only the difference,
// that a delete makes room again, and that other users are unaffected. On
// three brokers: the servers' usage indexes follow replicated buckets.
func TestUserQuota(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"),
		ftfstest.ServerArgs("--user-quota", "5MiB"))
	sys.AddUser(t, "carol")
	sys.AddUser(t, "dave")
	carol, dave := sys.Login(t, "carol"), sys.Login(t, "dave")
	carolRelayed := sys.Login(t, "carol", client.WithRelayedUploads())
	st := openStorage(t, sys)

	sys.PutRandom(t, carol, "q/a", 2<<20)
	sys.PutRandom(t, carol, "q/b", 2<<20)
	c := sys.PutRandom(t, carol, "q/c", 1<<20)
	full := st.bytes(t)

	refused := func(c *client.Client, name string, n int, size int64, used string) {
		t.Helper()
		start := time.Now()
		_, err := c.Put(ctxFor(t, 2*time.Minute), name, bytes.NewReader(ftfstest.RandomBytes(n)), size)
		if !errors.Is(err, client.ErrQuota) {
			t.Fatalf("put %s (%d bytes, announced %d): %v; want ErrQuota", name, n, size, err)
		}
		if took := time.Since(start); took > promptly {
			t.Fatalf("put %s: ErrQuota after %v", name, took)
		}
		if !strings.Contains(err.Error(), "uses "+used+" of 5MiB") {
			t.Fatalf("put %s: the error does not say %s used of 5MiB: %v", name, used, err)
		}
	}
	refused(carol, "q/d", 1, 1, "5MiB")
	refused(carol, "q/d", 100<<10, -1, "5MiB")
	// An overwrite of q/c announcing its size, but sending more: relayed,
	// since a direct upload stops at its announced size itself
	// (TestMaxFileSize), and only the relay's server sees more.
	refused(carolRelayed, "q/c", 2<<20, 1<<20, "5MiB")
	refused(carol, "q/c", 1<<20+1, 1<<20+1, "5MiB")
	st.cleanedUp(t, "carol", full)
	ftfstest.SameBytes(t, c, ftfstest.GetBytes(t, carol, "q/c"))

	// Replacing q/c with as many bytes fits, whether announced or not.
	sys.PutRandom(t, carol, "q/c", 1<<20)
	data := ftfstest.RandomBytes(1 << 20)
	if _, err := carol.Put(ctxFor(t, 2*time.Minute), "q/c", bytes.NewReader(data), -1); err != nil {
		t.Fatalf("overwrite q/c with as many bytes of unknown size: %v", err)
	}
	ftfstest.SameBytes(t, data, ftfstest.GetBytes(t, carol, "q/c"))

	// Another user's quota is their own.
	sys.PutRandom(t, dave, "q/dave", 3<<20)

	if err := carol.Delete(ctxFor(t, 30*time.Second), "q/a"); err != nil {
		t.Fatal(err)
	}
	sys.PutRandom(t, carol, "q/d", 2<<20)
	refused(carol, "q/e", 1, 1, "5MiB")
	files, err := carol.List(ctxFor(t, 30*time.Second), "q/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "q/b q/c q/d q/dave" {
		t.Fatalf("files: %s", got)
	}
}

// TestOpenUploadsLimitAndIdleExpiry checks that a user with
// --max-open-uploads unfinished uploads cannot open another, that other
// users can, and that uploads idle for --upload-idle are dropped with their
// chunks, which frees their places.
func TestOpenUploadsLimitAndIdleExpiry(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"),
		ftfstest.ServerArgs("--max-open-uploads", "2", "--max-transfers", "0", "--upload-idle", "4s"))
	sys.AddUser(t, "erin")
	sys.AddUser(t, "frank")
	erin, frank := sys.Login(t, "erin"), sys.Login(t, "frank")
	st := openStorage(t, sys)

	// Two uploads that send one chunk each, then wait for more input.
	var stalled []*stalledPut
	for _, name := range []string{"o/1", "o/2"} {
		stalled = append(stalled, startStalledPut(t, erin, name, subjects.ChunkSize, -1))
	}
	var ids []string
	ftfstest.Eventually(t, 30*time.Second, "two open uploads with a chunk each", func() bool {
		ids = st.uploadIDs(t, "erin")
		return len(ids) == 2 && st.chunks(t, ids[0]) == 1 && st.chunks(t, ids[1]) == 1
	})

	start := time.Now()
	// Of unknown size: an upload, where a small file of known size is put
	// in one request.
	_, err := erin.Put(ctxFor(t, time.Minute), "o/3", bytes.NewReader([]byte("x")), -1)
	if !errors.Is(err, client.ErrQuota) || !strings.Contains(err.Error(), "2 unfinished uploads") {
		t.Fatalf("a third open upload: %v; want ErrQuota naming 2 unfinished uploads", err)
	}
	if took := time.Since(start); took > promptly {
		t.Fatalf("ErrQuota after %v", took)
	}
	// A put in one request leaves no upload open: the limit does not stop it.
	sys.PutRandom(t, erin, "o/small", 1000)
	sys.PutRandom(t, frank, "o/frank", 1000)

	// Idle for --upload-idle: dropped, chunks and all.
	ftfstest.Eventually(t, 30*time.Second, "idle uploads dropped", func() bool {
		return st.openUploads(t, "erin") == 0 && st.chunks(t, ids[0]) == 0 && st.chunks(t, ids[1]) == 0
	})
	if _, err := erin.Put(ctxFor(t, time.Minute), "o/3", bytes.NewReader([]byte("x")), -1); err != nil {
		t.Fatalf("an upload once the idle ones were dropped: %v", err)
	}
	for _, p := range stalled {
		if err := p.finish(t, nil); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("put %s after its upload expired: %v; want ErrNotFound", p.name, err)
		}
		if _, err := erin.Stat(ctxFor(t, 30*time.Second), p.name); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("stat %s: %v; want ErrNotFound", p.name, err)
		}
	}
}

// TestTransfersLimit checks --max-transfers: with an upload streaming and a
// download running, a user's next upload and download are refused with
// ErrQuota while another user's go through, the running ones finish, and
// once one has, the user may start another.
func TestTransfersLimit(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"),
		ftfstest.ServerArgs("--max-transfers", "2"))
	sys.AddUser(t, "gina")
	sys.AddUser(t, "hank")
	gina, hank := sys.Login(t, "gina"), sys.Login(t, "hank")
	st := openStorage(t, sys)
	// More than three download batches: a client asks for one batch ahead,
	// and a download counts until its last batch is asked for, so one
	// stalled writing its first batch is still running.
	big := sys.PutRandom(t, gina, "t/big", 3*subjects.DownloadBatch*subjects.ChunkSize+1<<20)
	small := sys.PutRandom(t, gina, "t/small", 1000)

	up := startStalledPut(t, gina, "t/up", 0, 1<<20)
	ftfstest.Eventually(t, 30*time.Second, "gina's upload open", func() bool { return st.openUploads(t, "gina") == 1 })
	w := newGateWriter(t)
	got := make(chan error, 1)
	go func() {
		_, err := gina.Get(ctxFor(t, 2*time.Minute), "t/big", w)
		got <- err
	}()
	select {
	case <-w.started:
	case err := <-got:
		t.Fatalf("get t/big: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("get t/big received nothing")
	}

	start := time.Now()
	if _, err := gina.Put(ctxFor(t, time.Minute), "t/third", bytes.NewReader([]byte("x")), 1); !errors.Is(err, client.ErrQuota) || !strings.Contains(err.Error(), "running 2 transfers") {
		t.Fatalf("a third transfer (put): %v; want ErrQuota naming 2 transfers", err)
	}
	if _, err := gina.Get(ctxFor(t, time.Minute), "t/small", io.Discard); !errors.Is(err, client.ErrQuota) {
		t.Fatalf("a third transfer (get): %v; want ErrQuota", err)
	}
	if took := time.Since(start); took > 2*promptly {
		t.Fatalf("refusals took %v", took)
	}
	// hank is not gina.
	sys.PutRandom(t, hank, "t/hank", 1000)
	ftfstest.SameBytes(t, small, getAs(t, hank, "t/small"))

	// The running download is not cut off; once it ends, gina may start
	// another transfer.
	close(w.release)
	if err := <-got; err != nil {
		t.Fatalf("get t/big: %v", err)
	}
	ftfstest.SameBytes(t, big, w.bytes())
	ftfstest.SameBytes(t, small, ftfstest.GetBytes(t, gina, "t/small"))
	sys.PutRandom(t, gina, "t/third", 1000)
	if err := up.finish(t, ftfstest.RandomBytes(1<<20)); err != nil {
		t.Fatalf("the streaming upload: %v", err)
	}
}

func getAs(t *testing.T, c *client.Client, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := c.Get(ctxFor(t, time.Minute), name, &buf); err != nil {
		t.Fatalf("get %s as %s: %v", name, c.User(), err)
	}
	return buf.Bytes()
}

// storage reads the buckets directly, with the file servers' identity.
type storage struct {
	stream  jetstream.Stream
	uploads jetstream.KeyValue
}

func openStorage(t *testing.T, sys *ftfstest.System) *storage {
	t.Helper()
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Second)
	stream, err := js.Stream(ctx, subjects.ObjectStream(subjects.FilesBucket))
	if err != nil {
		t.Fatal(err)
	}
	uploads, err := js.KeyValue(ctx, subjects.UploadsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return &storage{stream: stream, uploads: uploads}
}

// bytes is the size of the files bucket's stream: every chunk and meta.
func (st *storage) bytes(t *testing.T) uint64 {
	t.Helper()
	info, err := st.stream.Info(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes
}

// openUploads counts user's unfinished upload records.
func (st *storage) openUploads(t *testing.T, user string) int {
	t.Helper()
	return len(st.uploadIDs(t, user))
}

// uploadIDs lists user's unfinished uploads.
func (st *storage) uploadIDs(t *testing.T, user string) []string {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	keys, err := st.uploads.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range keys {
		e, err := st.uploads.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Owner     string          `json:"owner"`
			Committed json.RawMessage `json:"committed"`
		}
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Owner == user && rec.Committed == nil {
			ids = append(ids, k)
		}
	}
	return ids
}

// chunks counts the chunks stored for an upload (or file version).
func (st *storage) chunks(t *testing.T, id string) uint64 {
	t.Helper()
	subj := subjects.ObjectChunks(subjects.FilesBucket, id)
	info, err := st.stream.Info(ctxFor(t, 10*time.Second), jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// cleanedUp waits until user has no unfinished upload and the files
// bucket holds exactly the bytes it held before.
func (st *storage) cleanedUp(t *testing.T, user string, before uint64) {
	t.Helper()
	ftfstest.Eventually(t, 30*time.Second, "refused uploads purged", func() bool {
		return st.bytes(t) == before && st.openUploads(t, user) == 0
	})
}

// stalledPut is a put that sends its first bytes, then waits for the rest.
type stalledPut struct {
	name string
	pw   *io.PipeWriter
	done chan error
}

func startStalledPut(t *testing.T, c *client.Client, name string, first int, size int64) *stalledPut {
	t.Helper()
	pr, pw := io.Pipe()
	p := &stalledPut{name: name, pw: pw, done: make(chan error, 1)}
	r := io.MultiReader(bytes.NewReader(ftfstest.RandomBytes(first)), pr)
	go func() {
		_, err := c.Put(ctxFor(t, 5*time.Minute), name, r, size)
		p.done <- err
	}()
	t.Cleanup(func() { _ = pw.CloseWithError(errors.New("test over")) })
	return p
}

// finish gives the put the rest of its input and returns how it ended.
func (p *stalledPut) finish(t *testing.T, rest []byte) error {
	t.Helper()
	go func() {
		_, _ = p.pw.Write(rest)
		_ = p.pw.Close()
	}()
	select {
	case err := <-p.done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("put %s did not end", p.name)
		return nil
	}
}

// gateWriter holds up the first write until release is closed.
type gateWriter struct {
	started, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	buf              bytes.Buffer
}

func newGateWriter(t *testing.T) *gateWriter {
	w := &gateWriter{started: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-w.release:
		default:
			close(w.release)
		}
	})
	return w
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.started)
		<-w.release
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *gateWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}
