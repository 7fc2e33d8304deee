package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

// Run runs the file service with role backup and the replica beside it;
// when one fails the other is stopped.
func Run(ctx context.Context, cfg Config) error {
	svc := cfg.Service
	svc.Role = fileserver.RoleBackup
	if svc.Logger == nil {
		svc.Logger = slog.Default()
	}
	if svc.Bucket == "" {
		svc.Bucket = subjects.FilesBucket
	}
	if cfg.ReplicaDir == "" {
		cfg.ReplicaDir = "./data/backup"
	}
	log := svc.Logger.With("role", fileserver.RoleBackup)
	opts := []nats.Option{
		nats.Name("ftfs-backup-replica"),
		nats.UserInfo(subjects.ServiceUser, svc.ServicePassword),
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(3),
	}
	if svc.TLSCA != "" {
		opts = append(opts, nats.RootCAs(svc.TLSCA))
	}
	nc, err := nats.Connect(strings.Join(svc.Servers, ","), opts...)
	if err != nil {
		return fmt.Errorf("backup: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	rep, err := NewReplica(js, svc.Bucket, cfg.ReplicaDir, log)
	if err != nil {
		return err
	}
	svc.Replica = rep.Stats
	svc.Fallback = rep

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- fileserver.Run(ctx, svc) }()
	go func() { errs <- rep.Run(ctx) }()
	first := <-errs
	cancel()
	second := <-errs
	return errors.Join(first, second, rep.journal.Close())
}

// manifestName is the replica's record of what it holds, inside its dir.
const manifestName = ".ftfs-replica.json"

// entry is what the replica holds of one file.
type entry struct {
	Digest string    `json:"digest"`
	Size   int64     `json:"size"`
	NUID   string    `json:"nuid"`
	MTime  time.Time `json:"mtime"`
	Owner  string    `json:"owner,omitempty"`
}

// Replica keeps a directory equal to the bucket: every file as a plain
// file, checked against its SHA-256, written atomically.
type Replica struct {
	js     jetstream.JetStream
	bucket string
	dir    string
	log    *slog.Logger
	stream atomic.Pointer[jetstream.Stream] // the bucket's stream, as the last watch opened it (follow)
	pend   *pending                         // changes seen, not yet copied
	// caughtUp: the watch has delivered the bucket's contents.
	caughtUp atomic.Bool
	// heard is when the watch last delivered anything (unix nanoseconds).
	heard atomic.Int64

	mu       sync.Mutex
	manifest map[string]entry
	journal  *os.File // changes since the manifest was saved
	synced   time.Time
	dirty    bool
	saved    time.Time
}

// NewReplica prepares a replica of bucket in dir, loading its manifest.
func NewReplica(js jetstream.JetStream, bucket, dir string, log *slog.Logger) (*Replica, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("replica dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("replica dir: %w", err)
	}
	r := &Replica{js: js, bucket: bucket, dir: abs, log: log.With("replica", abs), manifest: map[string]entry{}, pend: newPending()}
	manifest, err := loadManifest(abs)
	if err != nil {
		r.log.Warn("manifest unreadable; verifying every file again", "err", err)
		manifest = map[string]entry{}
	}
	r.manifest = manifest
	r.journal, err = os.OpenFile(filepath.Join(abs, journalName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("replica journal: %w", err)
	}
	// End a line torn by a crash, so that the next change starts its own.
	if b, err := os.ReadFile(r.journal.Name()); err == nil && len(b) > 0 && b[len(b)-1] != '\n' {
		_, _ = r.journal.WriteString("\n")
	}
	return r, nil
}

// journalName is the log of manifest changes since the manifest was last
// written whole: a copy placed a moment before the backup was killed keeps
// its record (its owner, its digest) without rewriting the manifest per file.
const journalName = ".ftfs-replica.journal"

// journalLine is one manifest change: an entry, or its removal (nil).
type journalLine struct {
	Name  string `json:"name"`
	Entry *entry `json:"entry"`
}

// loadManifest reads the manifest of dir and replays its journal.
func loadManifest(dir string) (map[string]entry, error) {
	manifest := map[string]entry{}
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err == nil {
		if err := json.Unmarshal(b, &manifest); err != nil {
			return nil, fmt.Errorf("%s: %w", manifestName, err)
		}
	}
	j, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		return manifest, nil
	}
	for _, line := range bytes.Split(j, []byte("\n")) {
		var l journalLine
		if json.Unmarshal(line, &l) != nil {
			continue // the torn last line of a crash
		}
		if l.Entry == nil {
			delete(manifest, l.Name)
		} else {
			manifest[l.Name] = *l.Entry
		}
	}
	return manifest, nil
}

// record changes name's manifest entry (nil removes it) and journals the
// change before the caller goes on; r.mu is held. The journal is not
// flushed to disk line by line: it is there for a backup killed before
// the manifest is next written whole (200 ms), and a killed process's
// writes survive in the page cache. A machine that crashes may lose the
// last lines, and then the replica re-copies those files, as it copies any
// file its manifest lacks (apply); a flush per file cost as much as the
// copy of a small file.
func (r *Replica) record(name string, e *entry) {
	if e == nil {
		delete(r.manifest, name)
	} else {
		r.manifest[name] = *e
	}
	r.dirty = true
	line, _ := json.Marshal(journalLine{Name: name, Entry: e})
	if _, err := r.journal.Write(append(line, '\n')); err != nil {
		// The manifest, written whole soon, still gets the change.
		r.log.Warn("replica journal", "err", err)
	}
}

// Stats reports the replica for the file service's status.
func (r *Replica) Stats() subjects.ReplicaStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := subjects.ReplicaStats{Dir: r.dir, Files: len(r.manifest), Synced: r.synced}
	for _, e := range r.manifest {
		st.Bytes += e.Size
	}
	return st
}

// Run keeps the directory in sync until ctx is done, restarting its watch
// with backoff when the bucket or the broker is away. Its copy workers
// outlive a watch's restart (their copies go on) and end with ctx.
func (r *Replica) Run(ctx context.Context) error {
	var workers sync.WaitGroup
	defer workers.Wait()
	for lane, n := range []int{smallWorkers, largeWorkers} {
		for range n {
			workers.Go(func() { r.copier(ctx, lane) })
		}
	}
	backoff := 250 * time.Millisecond
	for {
		err := r.follow(ctx)
		r.saveManifest(true)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("replica watch interrupted; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow watches the bucket: first every current object, then changes.
func (r *Replica) follow(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	obs, err := r.js.ObjectStore(octx, r.bucket)
	if err == nil {
		// Once per watch, not per file: a stream info request for every
		// small file copied cost the broker as much as the copy.
		var st jetstream.Stream
		if st, err = r.js.Stream(octx, subjects.ObjectStream(r.bucket)); err == nil {
			r.stream.Store(&st)
		}
	}
	cancel()
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", r.bucket, err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := obs.Watch(wctx)
	if err != nil {
		return fmt.Errorf("watch bucket: %w", err)
	}
	defer w.Stop()
	current := map[string]bool{}
	r.caughtUp.Store(false)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.saveManifest(false)
		case info, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			r.heard.Store(time.Now().UnixNano())
			if info == nil { // initial state delivered
				r.caughtUp.Store(true)
				r.removeMissing(current)
				n, _ := r.pend.lag()
				if n == 0 {
					r.markSynced()
				}
				r.log.Info("replica watch caught up", "files", len(current), "copies pending", n)
				continue
			}
			if !r.caughtUp.Load() && !info.Deleted {
				current[info.Name] = true
			}
			r.apply(ctx, info)
			if n, _ := r.pend.lag(); n == 0 && r.caughtUp.Load() {
				r.markSynced()
			}
		}
	}
}

func (r *Replica) markSynced() {
	r.mu.Lock()
	r.synced = time.Now().UTC()
	r.mu.Unlock()
}

// localPath maps an object name into the replica dir, refusing any name
// that is not a valid ftfs name or would leave the dir.
func (r *Replica) localPath(name string) (string, error) {
	if err := subjects.ValidName(name); err != nil {
		return "", err
	}
	p := filepath.Join(r.dir, filepath.FromSlash(name))
	if !strings.HasPrefix(p, r.dir+string(filepath.Separator)) || strings.HasPrefix(filepath.Base(p), ".ftfs-") {
		return "", fmt.Errorf("name %q does not map into the replica dir", name)
	}
	return p, nil
}

// apply brings one name in line with the bucket: a delete at once, a new
// version by queueing its copy (copier), which a later change of the name
// cancels.
func (r *Replica) apply(ctx context.Context, info *jetstream.ObjectInfo) {
	p, err := r.localPath(info.Name)
	if err != nil {
		r.log.Error("skipping object", "name", info.Name, "err", err)
		return
	}
	if info.Deleted {
		r.pend.forget(info.Name)
		if err := r.drop(info.Name, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("remove deleted file", "name", info.Name, "err", err)
		}
		r.pruneDirs(filepath.Dir(p))
		return
	}
	r.mu.Lock()
	have, ok := r.manifest[info.Name]
	r.mu.Unlock()
	if ok && have.NUID == info.NUID && have.Digest == info.Digest {
		if st, err := os.Stat(p); err == nil && st.Size() == int64(info.Size) {
			r.pend.forget(info.Name)
			return
		}
	}
	r.pend.add(ctx, info, time.Now().UTC())
}

// copier copies the changes of one lane until ctx ends. A copy that fails
// (storage away) is tried again, with backoff, for as long as its change
// is the newest of its name.
func (r *Replica) copier(ctx context.Context, lane int) {
	for {
		c := r.pend.next(ctx, lane)
		if c == nil {
			return
		}
		backoff := 250 * time.Millisecond
		for {
			err := r.fetch(c)
			if err == nil || c.ctx.Err() != nil {
				break
			}
			r.log.Warn("replica copy failed; trying again", "name", c.name, "in", backoff, "err", err)
			select {
			case <-c.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		if r.pend.done(c) && r.caughtUp.Load() {
			r.markSynced()
		}
	}
}

// fetch copies the version of a file the watch delivered, verifying its
// digest, and places it unless a newer change of the name came meanwhile.
// It does not ask for the file's info again: that would be a direct get,
// which a follower that has not yet applied the write answers with "not
// found". A nil error means done with c: copied, superseded, or not
// copyable (logged).
func (r *Replica) fetch(c *change) error {
	info, name := c.info, c.name
	p, err := r.localPath(name)
	if err != nil {
		return nil // apply queues valid names only
	}
	st := r.stream.Load()
	if st == nil {
		return errors.New("bucket's stream not opened yet")
	}
	gctx, cancel := context.WithTimeout(c.ctx, 10*time.Minute)
	defer cancel()
	res := &chunkReader{ctx: gctx, stream: *st, subject: subjects.ObjectChunks(r.bucket, info.NUID), left: info.Chunks}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.log.Error("cannot make directory for file", "name", name, "err", err)
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".ftfs-tmp-*")
	if err != nil {
		return fmt.Errorf("replica temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), res)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	digest := subjects.Digest(h.Sum(nil))
	mismatch := err == nil && (digest != info.Digest || n != int64(info.Size))
	if c.ctx.Err() != nil {
		return nil // superseded: a newer change of the name is queued
	}
	if err != nil || mismatch {
		if r.superseded(gctx, info) {
			return nil // deleted or replaced while copying; its change follows
		}
	}
	if mismatch {
		// Copying again would give the same bytes: report, keep no copy.
		r.log.Error("object does not match its digest; not replicated", "name", name, "digest", digest, "want", info.Digest)
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy of %q: %w", name, err)
	}
	// File and manifest change together, so that a reader (Open) never
	// pairs one version's bytes with another's digest; and only while c
	// is the newest change of its name, so that an older copy finishing
	// late never replaces a newer version or brings a deleted file back.
	r.mu.Lock()
	if !r.pend.current(c) {
		r.mu.Unlock()
		return nil
	}
	err = os.Rename(tmp.Name(), p)
	if err == nil {
		r.record(name, &entry{Digest: info.Digest, Size: int64(info.Size), NUID: info.NUID, MTime: info.ModTime, Owner: info.Metadata[subjects.MetaOwner]})
		r.pend.done(c)
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Error("cannot place replica file", "name", name, "err", err)
		return nil
	}
	r.log.Debug("replicated", "name", name, "size", n)
	return nil
}

// drop removes name's file at p and its manifest entry, together.
func (r *Replica) drop(name, p string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := os.Remove(p)
	if _, ok := r.manifest[name]; ok {
		r.record(name, nil)
	}
	return err
}

// removeMissing deletes local files the bucket no longer has: deletes that
// happened while the backup was down.
func (r *Replica) removeMissing(current map[string]bool) {
	_ = filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".ftfs-") {
			return nil
		}
		rel, err := filepath.Rel(r.dir, p)
		if err != nil {
			return nil
		}
		name := filepath.ToSlash(rel)
		if !current[name] {
			if err := r.drop(name, p); err == nil {
				r.log.Info("removed file deleted while away", "name", name)
			}
			r.pruneDirs(filepath.Dir(p))
		}
		return nil
	})
	r.mu.Lock()
	for name := range r.manifest {
		if !current[name] {
			r.record(name, nil)
		}
	}
	r.mu.Unlock()
	for name := range r.pend.infos() {
		if !current[name] {
			r.pend.forget(name)
		}
	}
}

// pruneDirs removes empty directories from dir up to the replica root.
func (r *Replica) pruneDirs(dir string) {
	for dir != r.dir && strings.HasPrefix(dir, r.dir) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// saveManifest writes the manifest when it changed, at most every 200ms
// unless forced.
func (r *Replica) saveManifest(force bool) {
	r.mu.Lock()
	if !r.dirty || (!force && time.Since(r.saved) < 200*time.Millisecond) {
		r.mu.Unlock()
		return
	}
	defer r.mu.Unlock()
	// Under the lock: the journal may be emptied only of what the written
	// manifest holds.
	b, err := json.Marshal(r.manifest)
	r.dirty, r.saved = false, time.Now()
	if err != nil {
		return
	}
	p := filepath.Join(r.dir, manifestName)
	tmp := p + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		r.log.Warn("save manifest", "err", err)
		return
	}
	if err := os.Rename(tmp, p); err != nil {
		r.log.Warn("save manifest", "err", err)
		return
	}
	if err := r.journal.Truncate(0); err != nil {
		r.log.Warn("empty replica journal", "err", err)
	}
}

// chunkReadTimeout bounds the read of one chunk.
const chunkReadTimeout = 10 * time.Second

// chunkReader reads an object version's chunks one direct get at a time,
// so that copying a file of any size holds one chunk in memory (nats.go's
// ObjectStore.Get lets a push consumer buffer up to 64 MiB).
type chunkReader struct {
	ctx     context.Context
	stream  jetstream.Stream
	subject string
	next    uint64 // stream sequence to read from
	left    uint32 // chunks still to read
	buf     []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.left == 0 {
			return 0, io.EOF
		}
		// Each read has its own deadline: after a quorum loss a read
		// may go unanswered, and the copy must fail and be tried again
		// rather than wait out the whole copy's.
		ctx, cancel := context.WithTimeout(c.ctx, chunkReadTimeout)
		m, err := c.stream.GetMsg(ctx, max(c.next, 1), jetstream.WithGetMsgSubject(c.subject))
		cancel()
		if err != nil {
			return 0, fmt.Errorf("read chunk: %w", err)
		}
		c.buf, c.next, c.left = m.Data, m.Sequence+1, c.left-1
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// writeSynced writes a file and flushes it to disk, so that a rename over
// the old one never leaves an empty file after a power loss.
func writeSynced(p string, b []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// superseded says whether the stream leader holds a newer state of info's
// name (deleted, or another version). The leader, not any replica: a
// follower behind the write would say "not found" of a file just stored.
func (r *Replica) superseded(ctx context.Context, info *jetstream.ObjectInfo) bool {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subjects.ObjectMeta(r.bucket, info.Name)})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := r.js.Conn().RequestWithContext(ctx, subjects.StreamMsgGet(subjects.ObjectStream(r.bucket)), req)
	if err != nil {
		return false
	}
	var resp struct {
		Message *struct {
			Data []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if json.Unmarshal(m.Data, &resp) != nil {
		return false
	}
	if resp.Error != nil {
		return resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound
	}
	var cur jetstream.ObjectInfo
	if resp.Message == nil || json.Unmarshal(resp.Message.Data, &cur) != nil {
		return false
	}
	return cur.Deleted || cur.NUID != info.NUID
}
