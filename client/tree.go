package client

// Whole trees of files (PutTree): many puts in flight over the one
// connection, each retried by the client as any put is, with one progress
// report for the tree.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// TreeState is what became of one entry of a tree.
type TreeState string

const (
	// TreeUploaded: the file was stored.
	TreeUploaded TreeState = "uploaded"
	// TreeUnchanged: with TreeUpdate, the name held the same size and
	// SHA-256 digest already; nothing was sent.
	TreeUnchanged TreeState = "unchanged"
	// TreeExists: with TreeNoOverwrite, the name existed; nothing was sent.
	TreeExists TreeState = "exists"
	// TreeIgnored: not a regular file (a symbolic link, a device, a named
	// pipe or a socket): never read, never sent.
	TreeIgnored TreeState = "ignored"
	// TreeFailed: reading or sending it failed (Err says why); any file
	// it replaces is unchanged, unless the failure was an interruption
	// (then the file may or may not have been stored).
	TreeFailed TreeState = "failed"
)

// TreeFile is one entry of a tree and what became of it.
type TreeFile struct {
	Path  string    `json:"path"`           // slash-separated, relative to the tree's root
	Name  string    `json:"name,omitempty"` // the ftfs name it maps to ("" if ignored)
	Size  int64     `json:"size"`
	State TreeState `json:"state"`
	// Reason says why an entry was ignored ("symbolic link", ...).
	Reason string `json:"reason,omitempty"`
	Err    error  `json:"-"`
	// Info is the stored file (TreeUploaded) or the one found
	// (TreeUnchanged, TreeExists).
	Info FileInfo `json:"-"`
}

// TreeProgress reports a tree's upload as it goes: files and bytes
// finished (uploaded, unchanged, existing or failed) of the total, bytes
// including those of the large files under way.
type TreeProgress struct {
	Files, FilesTotal int
	Bytes, BytesTotal int64
	Failed            int
	// Failovers counts the times a file's transfer moved to another server.
	Failovers int
}

// TreeResult sums up a tree's upload.
type TreeResult struct {
	Uploaded  int   `json:"uploaded"`
	Unchanged int   `json:"unchanged"`
	Existing  int   `json:"existing"`
	Bytes     int64 `json:"bytes"` // of the files uploaded
	// NotSent counts the files never tried, because the upload was
	// interrupted or could not go on (see PutTree).
	NotSent int        `json:"not_sent"`
	Ignored []TreeFile `json:"ignored,omitempty"`
	Failed  []TreeFile `json:"failed,omitempty"`
}

type treeOptions struct {
	update      bool
	noOverwrite bool
	jobs        int
	progress    func(TreeProgress)
	onFile      func(TreeFile)
}

// TreeOption configures PutTree.
type TreeOption func(*treeOptions)

// TreeUpdate skips every file whose name holds the same size and SHA-256
// digest already (the prefix is listed once; local files of the same size
// are hashed to compare).
func TreeUpdate() TreeOption { return func(o *treeOptions) { o.update = true } }

// TreeNoOverwrite leaves every existing name as it is (TreeExists).
func TreeNoOverwrite() TreeOption { return func(o *treeOptions) { o.noOverwrite = true } }

// TreeJobs sets how many files are sent at once (default DefaultTreeJobs);
// at most MaxTreeUploads of them are large (uploads).
func TreeJobs(n int) TreeOption { return func(o *treeOptions) { o.jobs = n } }

// OnTreeProgress calls f as the tree goes (at most every 100 ms, and once
// at the end), never from two goroutines at once.
func OnTreeProgress(f func(TreeProgress)) TreeOption {
	return func(o *treeOptions) { o.progress = f }
}

// OnTreeFile calls f once for every entry as it is done with (ignored
// entries first, during the walk), never from two goroutines at once.
func OnTreeFile(f func(TreeFile)) TreeOption { return func(o *treeOptions) { o.onFile = f } }

const (
	// DefaultTreeJobs is how many files PutTree sends at once: small
	// files go in one request each, so a tree's rate is the number of
	// requests in flight over a request's round trip.
	DefaultTreeJobs = 32
	// MaxTreeUploads bounds the large files (over subjects.MaxPutSize)
	// sent at once: each holds an upload window (4 MiB) and a connection
	// of its own, and counts against the user's transfers at once.
	MaxTreeUploads = 4
	// maxInvalidShown bounds the invalid names an error lists.
	maxInvalidShown = 10
)

// TreeName maps a path of a tree (slash-separated, relative to its root)
// to its ftfs name below prefix: "prefix/dir/file", or the path alone
// when prefix is "". Trailing slashes of the prefix are dropped.
func TreeName(prefix, rel string) string {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return rel
	}
	return prefix + "/" + rel
}

// PutTree uploads every regular file below the root of fsys (an
// os.DirFS, or an os.Root's FS to stay inside the directory) as
// TreeName(prefix, path), sending many at once over the client's one
// connection. Each put is retried on another server as any put is (same
// request ID), so the death of a file server costs no file twice and
// loses none. It walks fsys twice, once to count and check what it holds,
// once to send it, keeping no list of the files.
//
// Entries that are not regular files are ignored (TreeIgnored), as rsync
// and scp skip them: symbolic links are not followed. Before anything is
// sent every name is checked: if any is not a valid ftfs name, or the
// prefix is not, PutTree sends nothing and returns an ErrInvalid error
// naming them. A file that fails does not stop the others: the result
// lists every failure and the error names the first. Only failures that
// no other file can escape stop the tree, leaving the rest NotSent: the
// session is refused (ErrUnauthorized), storage is read-only
// (ErrReadOnly), or no file server answered within a request's budget
// (ErrUnavailable). A cancelled ctx stops it too, the files in flight
// failing with its error (any of them may have been stored).
func (c *Client) PutTree(ctx context.Context, fsys fs.FS, prefix string, opts ...TreeOption) (TreeResult, error) {
	o := treeOptions{jobs: DefaultTreeJobs}
	for _, opt := range opts {
		opt(&o)
	}
	o.jobs = max(o.jobs, 1)
	var res TreeResult
	if p := strings.TrimRight(prefix, "/"); p != "" {
		if err := subjects.ValidName(p); err != nil {
			return res, fmt.Errorf("put -r: prefix: %w", fromWire(err))
		}
	}
	sc, err := scanTree(fsys, prefix)
	if err != nil {
		return res, err
	}
	if err := sc.invalid(); err != nil {
		return res, err
	}
	t := &tree{c: c, fsys: fsys, o: o, res: &res, prefix: prefix}
	t.p.FilesTotal, t.p.BytesTotal = sc.files, sc.bytes
	if o.update || o.noOverwrite {
		list := strings.TrimRight(prefix, "/")
		if list != "" {
			list += "/"
		}
		l, err := c.ListFiles(ctx, list)
		if err != nil {
			return res, fmt.Errorf("put -r: %w", err)
		}
		t.remote = make(map[string]FileInfo, len(l.Files))
		for _, fi := range l.Files {
			t.remote[fi.Name] = fi
		}
	}
	for _, f := range sc.other {
		if f.State == TreeFailed {
			res.Failed = append(res.Failed, f)
		} else {
			res.Ignored = append(res.Ignored, f)
		}
		t.fileDone(f)
	}
	t.report(true)
	t.run(ctx)
	t.report(true)
	return res, t.err(ctx, sc.files)
}

// scan is what a first walk of a tree found: the regular files (their
// number and bytes; the second walk, which sends them, keeps none, so that
// memory does not grow with the tree), the entries it ignores (not
// regular) or could not read (TreeFailed: a directory it may not list),
// and the local names that cannot be ftfs names.
type scan struct {
	files    int
	bytes    int64
	other    []TreeFile
	bad      []string // the first maxInvalidShown invalid names, with why
	badCount int
}

func scanTree(fsys fs.FS, prefix string) (scan, error) {
	var sc scan
	err := walkFiles(fsys, prefix, func(f TreeFile) error {
		if f.State != "" {
			sc.other = append(sc.other, f)
			return nil
		}
		if err := subjects.ValidName(f.Name); err != nil {
			sc.badCount++
			if len(sc.bad) < maxInvalidShown {
				sc.bad = append(sc.bad, fmt.Sprintf("%q: %v", f.Path, err))
			}
		}
		sc.files++
		sc.bytes += f.Size
		return nil
	})
	return sc, err
}

// walkFiles calls found for every entry below the root of fsys but
// directories, in lexical order: a regular file with its name and size,
// anything else TreeIgnored, an entry it could not read TreeFailed. An
// error of found ends the walk with it.
func walkFiles(fsys fs.FS, prefix string, found func(TreeFile) error) error {
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			// WalkDir goes on with the rest, skipping what it could not read.
			return found(TreeFile{Path: p, State: TreeFailed, Err: err})
		}
		typ := d.Type()
		switch {
		case d.IsDir():
			return nil
		case typ.IsRegular():
			info, err := d.Info()
			if err != nil {
				return found(TreeFile{Path: p, State: TreeFailed, Err: err})
			}
			return found(TreeFile{Path: p, Name: TreeName(prefix, p), Size: info.Size()})
		default:
			return found(TreeFile{Path: p, State: TreeIgnored, Reason: irregular(typ)})
		}
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return fmt.Errorf("put -r: %w", err)
	}
	return nil
}

// errStopWalk ends a walk early without an error.
var errStopWalk = errors.New("stop the walk")

// irregular names the kind of a file that is not regular.
func irregular(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link (not followed)"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "not a regular file"
}

// invalid refuses a tree holding a name ftfs cannot store, naming the
// first maxInvalidShown of them.
func (sc scan) invalid() error {
	if sc.badCount == 0 {
		return nil
	}
	more := ""
	if sc.badCount > len(sc.bad) {
		more = fmt.Sprintf("; and %d more", sc.badCount-len(sc.bad))
	}
	what := fmt.Sprintf("%d local file names cannot be ftfs names", sc.badCount)
	if sc.badCount == 1 {
		what = "a local file name cannot be an ftfs name"
	}
	return fmt.Errorf("put -r: %w: %s, so nothing was uploaded (rename or move them): %s%s",
		ErrInvalid, what, strings.Join(sc.bad, "; "), more)
}

// tree is one PutTree at work.
type tree struct {
	c      *Client
	fsys   fs.FS
	prefix string
	o      treeOptions
	remote map[string]FileInfo // with update or noOverwrite: the prefix's files

	mu      sync.Mutex // guards what follows, and serializes the callbacks
	res     *TreeResult
	p       TreeProgress
	last    time.Time
	stopped error // why no more files are started
	partial atomic.Int64
}

// run walks the tree again and sends its regular files with o.jobs
// workers; a worker with a large file takes one of MaxTreeUploads places
// first. Entries that are not regular files were reported by the first
// walk; a file that appeared since with an invalid name fails.
func (t *tree) run(ctx context.Context) {
	next := make(chan TreeFile)
	uploads := make(chan struct{}, MaxTreeUploads)
	var wg sync.WaitGroup
	for range min(t.o.jobs, max(t.p.FilesTotal, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				if f.Size > subjects.MaxPutSize {
					select {
					case uploads <- struct{}{}:
					case <-ctx.Done():
						t.notSent(1)
						continue
					}
				}
				t.fileDone(t.put(ctx, f))
				if f.Size > subjects.MaxPutSize {
					<-uploads
				}
			}
		}()
	}
	sent := 0
	err := walkFiles(t.fsys, t.prefix, func(f TreeFile) error {
		if f.State != "" {
			return nil
		}
		if t.halted(ctx) {
			return errStopWalk
		}
		if err := subjects.ValidName(f.Name); err != nil {
			f.State, f.Err = TreeFailed, fromWire(err)
			t.fileDone(f)
			return nil
		}
		select {
		case next <- f:
			sent++
			return nil
		case <-ctx.Done():
			return errStopWalk
		}
	})
	close(next)
	wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil && t.stopped == nil {
		t.stopped = err // the directory could no longer be read
	}
	// The files the walk did not reach (the workers count those they got
	// and could not start).
	if unsent := t.p.FilesTotal - sent; unsent > 0 && (t.stopped != nil || ctx.Err() != nil) {
		t.res.NotSent += unsent
	}
}

// halted says whether no more files may start.
func (t *tree) halted(ctx context.Context) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped != nil || ctx.Err() != nil
}

func (t *tree) notSent(n int) {
	t.mu.Lock()
	t.res.NotSent += n
	t.mu.Unlock()
}

// put sends one file, unless it is unchanged (update) or exists
// (noOverwrite).
func (t *tree) put(ctx context.Context, f TreeFile) TreeFile {
	fail := func(err error) TreeFile {
		f.State, f.Err = TreeFailed, err
		return f
	}
	existing, exists := t.remote[f.Name]
	if t.o.noOverwrite && exists {
		f.State, f.Info = TreeExists, existing
		return f
	}
	file, err := t.fsys.Open(f.Path)
	if err != nil {
		return fail(err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("%s: no longer a regular file", f.Path))
	}
	if st.Size() != f.Size {
		t.mu.Lock()
		t.p.BytesTotal += st.Size() - f.Size
		t.mu.Unlock()
		f.Size = st.Size()
	}
	var r io.Reader = file
	if f.Size <= subjects.MaxPutSize {
		// Read once, for the digest and the put.
		data := make([]byte, f.Size)
		if _, err := io.ReadFull(file, data); err != nil {
			return fail(fmt.Errorf("read %s: %w", f.Path, err))
		}
		r = bytes.NewReader(data)
	}
	if t.o.update && exists && existing.Size == f.Size {
		same, err := sameDigest(r, existing.Digest)
		if err != nil {
			return fail(fmt.Errorf("read %s: %w", f.Path, err))
		}
		if same {
			f.State, f.Info = TreeUnchanged, existing
			return f
		}
		if r, err = rewind(t.fsys, f.Path, r, &file); err != nil {
			return fail(err)
		}
	}
	var opts []TransferOption
	if t.o.noOverwrite {
		opts = append(opts, NoOverwrite())
	}
	var sent int64    // bytes of this file counted in t.partial
	var failovers int // of this file, reported so far
	opts = append(opts, OnProgress(func(p Progress) {
		if p.Done > sent {
			t.partial.Add(p.Done - sent)
			sent = p.Done
		}
		if p.Failovers > failovers {
			t.mu.Lock()
			t.p.Failovers += p.Failovers - failovers
			t.mu.Unlock()
			failovers = p.Failovers
		}
		t.report(false)
	}))
	fi, err := t.c.Put(ctx, f.Name, r, f.Size, opts...)
	t.partial.Add(-sent)
	if err != nil && ctx.Err() != nil {
		// Whatever the put said (it may have given up waiting), the
		// interruption ended it, maybe after the file was stored.
		return fail(fmt.Errorf("interrupted, maybe after it was stored: %w", ctx.Err()))
	}
	if err != nil {
		if fatal(err) {
			t.mu.Lock()
			if t.stopped == nil {
				t.stopped = err
			}
			t.mu.Unlock()
		}
		return fail(err)
	}
	f.State, f.Info = TreeUploaded, fi
	return f
}

// fatal says whether err dooms every other file as well.
func fatal(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrUnavailable)
}

// sameDigest says whether r's content has the SHA-256 digest want.
func sameDigest(r io.Reader, want string) (bool, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return false, err
	}
	return digestOf(h) == want, nil
}

// rewind returns r from its start again: a bytes.Reader or a seekable
// file is sought back, anything else opened again (closing *file, which
// becomes the new one).
func rewind(fsys fs.FS, name string, r io.Reader, file *fs.File) (io.Reader, error) {
	if s, ok := r.(io.Seeker); ok {
		if _, err := s.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind %s: %w", name, err)
		}
		return r, nil
	}
	(*file).Close()
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	*file = f
	return f, nil
}

// fileDone records what became of f and reports it.
func (t *tree) fileDone(f TreeFile) {
	t.mu.Lock()
	switch f.State {
	case TreeUploaded:
		t.res.Uploaded++
		t.res.Bytes += f.Size
	case TreeUnchanged:
		t.res.Unchanged++
	case TreeExists:
		t.res.Existing++
	case TreeFailed:
		if f.Name != "" { // a walk failure was added with the ignored
			t.res.Failed = append(t.res.Failed, f)
		}
		t.p.Failed++
	}
	if f.Name != "" {
		t.p.Files++
		t.p.Bytes += f.Size
	}
	if t.o.onFile != nil {
		t.o.onFile(f)
	}
	t.mu.Unlock()
	t.report(false)
}

// report calls the progress callback, at most every 100 ms unless final.
func (t *tree) report(final bool) {
	if t.o.progress == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !final && time.Since(t.last) < 100*time.Millisecond {
		return
	}
	t.last = time.Now()
	p := t.p
	p.Bytes += t.partial.Load()
	t.o.progress(p)
}

// err is PutTree's error: nil when every file made it. It sorts the
// failures by path.
func (t *tree) err(ctx context.Context, total int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.res
	slices.SortFunc(r.Failed, func(a, b TreeFile) int { return strings.Compare(a.Path, b.Path) })
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("put -r: interrupted: %d of %d files uploaded, %d not sent: %w", r.Uploaded, total, r.NotSent, ctx.Err())
	case t.stopped != nil:
		return fmt.Errorf("put -r: stopped after %d of %d files, %d not sent: %w", r.Uploaded, total, r.NotSent, t.stopped)
	case len(r.Failed) > 0:
		first := r.Failed[0]
		return fmt.Errorf("put -r: %d failed (%d of %d files uploaded); the first, %s: %w", len(r.Failed), r.Uploaded, total, first.Path, first.Err)
	}
	return nil
}
