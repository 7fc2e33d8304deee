package backup

import (
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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/fileserver"
	"github.com/ftfs/ftfs/subjects"
)

// RestoreConfig says what to restore where.
type RestoreConfig struct {
	Servers         []string
	ServicePassword string
	Bucket          string // default subjects.FilesBucket
	// Replicas of the bucket. 0 picks them as the file servers are told
	// to (fileserver.Config.Replicas): 1 on a single broker, on a cluster one
	// per broker up to 3 (MaxAutoReplicas). When the bucket exists with
	// fewer, a restore given Replicas raises them; one that picked them
	// itself only warns.
	Replicas int
	Dir      string // a backup's replica dir
	// Owner owns files the replica's manifest does not name (default
	// "admin").
	Owner  string
	Logger *slog.Logger
	// TLSCA, when set, is the CA file that signed the brokers'
	// certificates (see fileserver.Config.TLSCA).
	TLSCA string
	// CallTimeout bounds each call to the brokers (default 10 s);
	// StepTimeout how long one step (connecting, creating the bucket,
	// storing one chunk) goes on retrying calls that time out or find
	// JetStream unavailable (default 2 minutes).
	CallTimeout time.Duration
	StepTimeout time.Duration
	// Progress, when set, is called after every chunk stored and every
	// file done or left out.
	Progress func(RestoreProgress)
}

// MaxAutoReplicas is the most replicas a restore picks by itself on a
// cluster (RestoreConfig.Replicas 0): JetStream's own limit is 5, and the
// file servers run with 3 on a three-broker cluster.
const MaxAutoReplicas = 3

// RestoreProgress is how far a restore is.
type RestoreProgress struct {
	Files, FilesTotal int   // done (restored, already there or left out) and in all
	Bytes, BytesTotal int64 // of the files' content
	Name              string
}

// RestoreReport counts what a restore did.
type RestoreReport struct {
	Restored int
	Bytes    int64
	// Present counts files the bucket held already with the replica's
	// content: a restore that stopped part way, run again.
	Present int
	// Skipped lists files left out, with the reason (a copy that no longer
	// matches its digest, a name that is not a valid file name).
	Skipped []string
	// Bucket is what restore found or made of the bucket.
	Replicas int  // of the bucket's stream when restore ended
	Created  bool // restore made the bucket
	// Warnings are things the operator should know, such as a bucket with
	// fewer replicas than the cluster allows.
	Warnings []string
	Elapsed  time.Duration
}

// errChanged: a file's content changed between its digest and its put.
var errChanged = errors.New("the copy changed while it was read")

// errGaveUp marks a step that kept failing until its StepTimeout.
var errGaveUp = errors.New("gave up")

// restorer is one run of Restore.
type restorer struct {
	cfg      RestoreConfig
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	rep      RestoreReport
	progress RestoreProgress
}

// Restore loads a replica dir into a files bucket that holds nothing the
// replica does not: every file whose content still matches the digest the
// manifest recorded, with its owner and modification time. It is the way
// back from a total loss of the JetStream data. Files the bucket holds
// already with the same content are left as they are, so a restore that
// stopped part way can be run again.
//
// Every call to the brokers has a deadline (CallTimeout) and is retried
// while it times out or finds JetStream unavailable (a cluster that has
// just started and is still electing leaders), up to StepTimeout.
func Restore(ctx context.Context, cfg RestoreConfig) (RestoreReport, error) {
	start := time.Now()
	if cfg.Bucket == "" {
		cfg.Bucket = subjects.FilesBucket
	}
	if cfg.Owner == "" {
		cfg.Owner = "admin"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 2 * time.Minute
	}
	r := &restorer{cfg: cfg, log: cfg.Logger.With("op", "restore", "bucket", cfg.Bucket)}
	err := r.run(ctx)
	r.rep.Elapsed = time.Since(start)
	if err != nil {
		return r.rep, fmt.Errorf("restore: %w", err)
	}
	return r.rep, nil
}

// plannedFile is one file of the replica dir to restore.
type plannedFile struct {
	name, path string
	size       int64
	mtime      time.Time
}

func (r *restorer) run(ctx context.Context) error {
	dir, err := filepath.Abs(r.cfg.Dir)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a directory", r.cfg.Dir)
	}
	manifest, err := loadManifest(dir)
	if err != nil {
		return err
	}
	plan, err := r.plan(dir)
	if err != nil {
		return err
	}
	if err := r.connect(ctx); err != nil {
		return err
	}
	defer r.nc.Close()
	stream, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	present, err := r.present(ctx, stream, manifest)
	if err != nil {
		return err
	}
	r.log.Info("restoring", "files", r.progress.FilesTotal, "bytes", r.progress.BytesTotal, "present", len(present), "replicas", r.rep.Replicas)
	for _, f := range plan {
		if err := r.restoreFile(ctx, f, manifest, present); err != nil {
			return fmt.Errorf("restore %q: %w", f.name, err)
		}
		r.progress.Files++
		r.progress.Name = f.name
		r.report()
	}
	return nil
}

// plan lists the files of dir to restore, leaving out names that are not
// valid file names, so that progress can say how far along it is.
func (r *restorer) plan(dir string) ([]plannedFile, error) {
	var plan []plannedFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".ftfs-") {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if err := subjects.ValidName(name); err != nil {
			r.rep.Skipped = append(r.rep.Skipped, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		plan = append(plan, plannedFile{name: name, path: p, size: info.Size(), mtime: info.ModTime().UTC()})
		r.progress.FilesTotal++
		r.progress.BytesTotal += info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return plan, nil
}

// connect connects with the file servers' storage identity, trying again
// until StepTimeout while no broker answers (brokers that are starting).
func (r *restorer) connect(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("ftfs-restore"),
		nats.UserInfo(subjects.ServiceUser, r.cfg.ServicePassword),
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		// A busy broker may take more than the 2 s default to send its INFO.
		nats.Timeout(r.cfg.CallTimeout),
		// Notice a dead broker in seconds, not minutes, and move on.
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(3),
	}
	if r.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(r.cfg.TLSCA))
	}
	url := strings.Join(r.cfg.Servers, ",")
	err := r.retry(ctx, "connect to "+url, func(context.Context) error {
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			if errors.Is(err, nats.ErrAuthorization) {
				return permanent{err}
			}
			return err
		}
		r.nc = nc
		return nil
	})
	if err != nil {
		return err
	}
	r.js, err = jetstream.New(r.nc, jetstream.WithDefaultTimeout(r.cfg.CallTimeout))
	if err != nil {
		r.nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// autoReplicas is the replica count the file servers of this system are
// told to use, as far as restore can tell: 1 on a single broker, on a
// cluster one per broker it knows of (those given and those the cluster
// announces), up to MaxAutoReplicas.
func (r *restorer) autoReplicas() (n int, why string) {
	if r.nc.ConnectedClusterName() == "" {
		return 1, "a single broker"
	}
	brokers := len(r.nc.Servers())
	return max(1, min(brokers, MaxAutoReplicas)), fmt.Sprintf("a cluster of %d brokers", brokers)
}

// bucket makes the files bucket, or opens it and checks its replicas.
func (r *restorer) bucket(ctx context.Context) (jetstream.Stream, error) {
	name := subjects.ObjectStream(r.cfg.Bucket)
	want, why := r.cfg.Replicas, "--replicas"
	if want <= 0 {
		want, why = r.autoReplicas()
	}
	var stream jetstream.Stream
	err := r.retry(ctx, "stream info "+name, func(ctx context.Context) error {
		var err error
		stream, err = r.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if stream == nil {
		err := r.retry(ctx, "create bucket "+r.cfg.Bucket, func(ctx context.Context) error {
			_, err := r.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:      r.cfg.Bucket,
				Description: "ftfs file content", // as the file servers make it
				Storage:     jetstream.FileStorage,
				Replicas:    want,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil // an attempt whose answer was lost
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("with %d replicas (%s): %w", want, why, err)
		}
		r.rep.Created = true
		r.log.Info("bucket created", "replicas", want, "because", why)
		err = r.retry(ctx, "stream info "+name, func(ctx context.Context) error {
			var err error
			stream, err = r.js.Stream(ctx, name)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	have := stream.CachedInfo().Config.Replicas
	r.rep.Replicas = have
	if have >= want {
		return stream, nil
	}
	if r.cfg.Replicas <= 0 {
		w := fmt.Sprintf("bucket %s has %d replica(s), fewer than %d (%s): the file servers raise it to their --replicas, or run restore with --replicas %d",
			r.cfg.Bucket, have, want, why, want)
		r.rep.Warnings = append(r.rep.Warnings, w)
		r.log.Warn("bucket has fewer replicas than the cluster allows", "replicas", have, "cluster", want)
		return stream, nil
	}
	cfg := stream.CachedInfo().Config
	cfg.Replicas = want
	err = r.retry(ctx, "raise the replicas of "+name, func(ctx context.Context) error {
		_, err := r.js.UpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		w := fmt.Sprintf("bucket %s has %d replica(s), fewer than --replicas %d, and raising them failed: %v", r.cfg.Bucket, have, want, err)
		r.rep.Warnings = append(r.rep.Warnings, w)
		r.log.Warn("raising the bucket's replicas failed", "replicas", have, "want", want, "err", err)
		return stream, nil
	}
	r.rep.Replicas = want
	r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("bucket %s had %d replica(s); raised to %d (--replicas)", r.cfg.Bucket, have, want))
	r.log.Warn("bucket had fewer replicas than --replicas; raised", "was", have, "now", want)
	return stream, nil
}

// present reads the files the bucket holds (their meta messages, one by
// one through the stream's leader: no consumer, which on a cluster that
// has just started may never deliver), and refuses a bucket that holds a
// file the replica does not hold with the same content. It returns the
// names already restored.
func (r *restorer) present(ctx context.Context, stream jetstream.Stream, manifest map[string]entry) (map[string]bool, error) {
	var metas map[string]uint64
	err := r.retry(ctx, "list the bucket's files", func(ctx context.Context) error {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subjects.ObjectMetas(r.cfg.Bucket)))
		if err != nil {
			return err
		}
		metas = info.State.Subjects
		return nil
	})
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	for subj := range metas {
		var info jetstream.ObjectInfo
		err := r.retry(ctx, "read "+subj, func(ctx context.Context) error {
			m, err := stream.GetLastMsgForSubject(ctx, subj)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(m.Data, &info); err != nil {
				return permanent{fmt.Errorf("meta %s: %w", subj, err)}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if info.Deleted {
			continue
		}
		if e, ok := manifest[info.Name]; !ok || e.Digest != info.Digest {
			return nil, fmt.Errorf("bucket %s is not empty: it holds %q, which the replica does not hold with the same content; restore only into an empty bucket", r.cfg.Bucket, info.Name)
		}
		present[info.Name] = true
	}
	return present, nil
}

// restoreFile restores one file unless it is present already or its copy
// no longer matches the manifest.
func (r *restorer) restoreFile(ctx context.Context, f plannedFile, manifest map[string]entry, present map[string]bool) error {
	if present[f.name] {
		r.rep.Present++
		r.progress.Bytes += f.size
		return nil
	}
	owner, mtime := r.cfg.Owner, f.mtime
	e, inManifest := manifest[f.name]
	if inManifest {
		if e.Owner != "" {
			owner = e.Owner
		}
		if !e.MTime.IsZero() {
			mtime = e.MTime
		}
	}
	digest, size, err := fileDigest(f.path)
	if err != nil {
		return err
	}
	if inManifest && (e.Digest != digest || e.Size != size) {
		r.rep.Skipped = append(r.rep.Skipped, fmt.Sprintf("%s: the copy no longer matches its recorded digest", f.name))
		r.progress.Bytes += f.size
		return nil
	}
	if err := r.putFile(ctx, f, owner, digest, mtime); errors.Is(err, errChanged) {
		r.rep.Skipped = append(r.rep.Skipped, fmt.Sprintf("%s: %v", f.name, err))
		return nil
	} else if err != nil {
		return err
	}
	r.rep.Restored++
	r.rep.Bytes += size
	r.log.Info("restored", "name", f.name, "size", size, "owner", owner)
	return nil
}

func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return subjects.Digest(h.Sum(nil)), n, nil
}

// putFile stores one file as the file servers do: its chunks on a new
// version's subject, each acknowledged before the next is sent, then its
// meta message, which makes it visible, with the original modification
// time (nats.go's object store writer records none). A chunk sent again
// after a lost answer is de-duplicated by its message ID. If the content
// read differs from the digest checked before (the file changed), the
// chunks are purged and the file is left out.
func (r *restorer) putFile(ctx context.Context, f plannedFile, owner, digest string, mtime time.Time) error {
	id := nuid.Next()
	chunkSubj := subjects.ObjectChunks(r.cfg.Bucket, id)
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	h := sha256.New()
	buf := make([]byte, subjects.ChunkSize)
	var size int64
	chunks := uint32(0)
	for {
		n, rerr := io.ReadFull(file, buf)
		if n > 0 {
			h.Write(buf[:n])
			m := nats.NewMsg(chunkSubj)
			m.Data = buf[:n]
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s.%d", id, chunks))
			err := r.retry(ctx, fmt.Sprintf("store chunk %d", chunks), func(ctx context.Context) error {
				_, err := r.js.PublishMsg(ctx, m)
				return err
			})
			if err != nil {
				r.purge(ctx, chunkSubj)
				return err
			}
			chunks++
			size += int64(n)
			r.progress.Bytes += int64(n)
			r.progress.Name = f.name
			r.report()
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			r.purge(ctx, chunkSubj)
			return rerr
		}
	}
	if got := subjects.Digest(h.Sum(nil)); got != digest {
		r.purge(ctx, chunkSubj)
		return errChanged
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:     f.name,
			Metadata: map[string]string{subjects.MetaOwner: owner},
			Opts:     &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
		},
		Bucket:  r.cfg.Bucket,
		NUID:    id,
		Size:    uint64(size),
		ModTime: mtime.UTC(),
		Chunks:  chunks,
		Digest:  digest,
	}
	data, err := json.Marshal(info)
	if err != nil {
		r.purge(ctx, chunkSubj)
		return fmt.Errorf("encode meta: %w", err)
	}
	m := nats.NewMsg(subjects.ObjectMeta(r.cfg.Bucket, f.name))
	m.Data = data
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.MsgIDHeader, id+".meta")
	err = r.retry(ctx, "store meta", func(ctx context.Context) error {
		_, err := r.js.PublishMsg(ctx, m)
		return err
	})
	if err != nil {
		// Its answer may have been lost with the meta stored: the
		// chunks stay (a run again sees the file present, or the file
		// servers' sweep purges chunks no meta names).
		return err
	}
	return nil
}

// purge removes a version's chunks after a failed put, within the call
// deadline; the file servers' sweep purges what it leaves.
func (r *restorer) purge(ctx context.Context, chunkSubj string) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CallTimeout)
	defer cancel()
	stream, err := r.js.Stream(pctx, subjects.ObjectStream(r.cfg.Bucket))
	if err == nil {
		err = stream.Purge(pctx, jetstream.WithPurgeSubject(chunkSubj))
	}
	if err != nil {
		r.log.Warn("purge of a failed put's chunks failed; the file servers' sweep purges them", "subject", chunkSubj, "err", err)
	}
}

func (r *restorer) report() {
	if r.cfg.Progress != nil {
		r.cfg.Progress(r.progress)
	}
}

// permanent marks an error that no retry mends.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// retry runs call with a deadline of CallTimeout, again while it times out
// or finds JetStream unavailable, until StepTimeout has passed.
func (r *restorer) retry(ctx context.Context, what string, call func(context.Context) error) error {
	deadline := time.Now().Add(r.cfg.StepTimeout)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		err := call(actx)
		cancel()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return fmt.Errorf("%s: %w", what, p.err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if !retryable(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%s: %w after %d attempts in %s: %w", what, errGaveUp, attempt, r.cfg.StepTimeout, err)
		}
		r.log.Warn("call failed; retrying", "call", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// JetStream error codes restore waits through: a cluster that has just
// started may not know all its brokers yet when asked for replicas.
const errCodeInsufficientResources jetstream.ErrorCode = 10023

// retryable says whether a call may succeed if made again: it timed out,
// JetStream is electing leaders, or the brokers are still starting.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInsufficientResources {
		return true
	}
	return fileserver.StorageUnavailable(err) || errors.Is(err, nats.ErrNoServers)
}
