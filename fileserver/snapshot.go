package fileserver

// Snapshots of the files index. Loading the index means reading the last
// meta message of every name in the bucket: some 14 s of CPU per million
// files on two cores (README, Scale), during which listings wait. A server
// with Config.IndexDir writes its index there as it stops and every
// snapshotEvery while it changes, with the stream sequence it holds, and
// at its next start reads the file and then only the meta messages stored
// after that sequence.
//
// What the messages after the snapshot cannot tell is a delete whose
// tombstone the storage sweep purged meanwhile: a file the snapshot holds
// would stay listed. The sweep therefore records, before it purges any
// tombstone, the highest stream sequence it purges (TombstonesPurged, a
// message in the files stream itself, written with the sequence it
// replaces expected, so two sweeps cannot lower it), and a snapshot older
// than that is not used. A snapshot is also refused when it was made of
// another stream (its creation time differs), when no meta message at or
// after its sequence is left (the stream was purged: the sweep keeps the
// last meta message), when it is corrupt, and when the index it comes from
// was last read in full more than snapshotTrust ago, so that an index that
// went wrong is not carried from start to start for ever.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

const (
	// snapshotEvery is how often a server writes its index when it has
	// changed, so that a server killed rather than stopped still starts
	// from a recent one.
	snapshotEvery = 5 * time.Minute
	// snapshotTrust is how long an index may go from snapshot to snapshot
	// without being read in full from storage.
	snapshotTrust = 24 * time.Hour
	// snapshotMagic starts a snapshot file; the number is its format.
	snapshotMagic = "ftfs-files-index 1\n"
)

// snapshotHeader is the first line of a snapshot file, after the magic.
type snapshotHeader struct {
	Bucket string `json:"bucket"`
	// StreamCreated is the files stream's creation time (Unix
	// nanoseconds): a stream deleted and made again is another stream.
	StreamCreated int64 `json:"stream_created"`
	// Seq is the last meta message the index had applied.
	Seq uint64 `json:"seq"`
	// FullRead is when the index this one descends from was read in full
	// from storage (Unix nanoseconds).
	FullRead int64 `json:"full_read"`
	Files    int   `json:"files"`
	// Owners are the owners the records name by number.
	Owners []string `json:"owners"`
}

// indexSnapshot is the files index as of one stream sequence.
type indexSnapshot struct {
	snapshotHeader
	records []fileRecord
}

// snapshot copies the index for a snapshot (the records themselves are
// immutable strings and are shared); ok is false while it is loading.
func (u *usage) snapshot() (indexSnapshot, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.loading {
		return indexSnapshot{}, false
	}
	snap := indexSnapshot{
		snapshotHeader: snapshotHeader{Seq: u.filesSeq, FullRead: u.fullRead.UnixNano(), Files: len(u.files), Owners: append([]string(nil), u.owners...)},
		records:        make([]fileRecord, 0, len(u.files)),
	}
	for _, r := range u.files {
		snap.records = append(snap.records, r)
	}
	return snap, true
}

// install makes the index hold snap, still loading: the meta messages
// stored after snap.Seq follow.
func (u *usage) install(snap indexSnapshot) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.owners = snap.Owners
	u.ownerIDs = make(map[string]uint32, len(snap.Owners))
	for i, o := range snap.Owners {
		u.ownerIDs[o] = uint32(i)
	}
	u.files = make(map[string]fileRecord, len(snap.records))
	for _, r := range snap.records {
		u.files[r.name()] = r
		u.stored[u.owners[r.ownerNumber()]] += r.size()
	}
	u.filesSeq, u.fullRead = snap.Seq, time.Unix(0, snap.FullRead)
	u.signal()
}

// writeSnapshot writes snap to path, atomically: a reader finds the old
// file or the new one, whole.
func writeSnapshot(path string, snap indexSnapshot) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	w := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	hdr, err := json.Marshal(snap.snapshotHeader)
	if err != nil {
		return err
	}
	w.WriteString(snapshotMagic)
	w.Write(hdr)
	w.WriteByte('\n')
	var n [binary.MaxVarintLen64]byte
	for _, r := range snap.records {
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(r)))])
		w.WriteString(string(r))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint32(nil, sum.Sum32())); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// errBadSnapshot: a snapshot file that cannot be read as one.
var errBadSnapshot = errors.New("not a files index snapshot, or a damaged one")

// readSnapshot reads the snapshot at path. Its records share one string,
// the file's content, rather than take an allocation each.
func readSnapshot(path string) (indexSnapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return indexSnapshot{}, err
	}
	if len(b) < len(snapshotMagic)+4 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return indexSnapshot{}, errBadSnapshot
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(b[len(body):]) {
		return indexSnapshot{}, fmt.Errorf("%w: checksum", errBadSnapshot)
	}
	rest := body[len(snapshotMagic):]
	line, rest, ok := bytes.Cut(rest, []byte{'\n'})
	if !ok {
		return indexSnapshot{}, errBadSnapshot
	}
	var snap indexSnapshot
	if err := json.Unmarshal(line, &snap.snapshotHeader); err != nil {
		return indexSnapshot{}, fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	// One string for every record, the file's own bytes, which nothing
	// writes to again: a copy would double the start's peak memory.
	all := unsafe.String(unsafe.SliceData(rest), len(rest))
	snap.records = make([]fileRecord, 0, snap.Files)
	for at := 0; at < len(rest); {
		n, k := binary.Uvarint(rest[at:])
		if k <= 0 || uint64(len(rest)-at-k) < n || n < recHeader {
			return indexSnapshot{}, fmt.Errorf("%w: record %d", errBadSnapshot, len(snap.records))
		}
		r := fileRecord(all[at+k : at+k+int(n)])
		if int(r.ownerNumber()) >= len(snap.Owners) || recHeader+int(r.u32(recNameLen)) > len(r) {
			return indexSnapshot{}, fmt.Errorf("%w: record %d", errBadSnapshot, len(snap.records))
		}
		if end, _ := r.digestEnd(); end > len(r) {
			return indexSnapshot{}, fmt.Errorf("%w: record %d", errBadSnapshot, len(snap.records))
		}
		snap.records = append(snap.records, r)
		at += k + int(n)
	}
	if len(snap.records) != snap.Files {
		return indexSnapshot{}, fmt.Errorf("%w: %d records, header says %d", errBadSnapshot, len(snap.records), snap.Files)
	}
	return snap, nil
}

// snapshotPath is where this server keeps its index's snapshot; "" when
// it keeps none.
func (s *Server) snapshotPath() string {
	if s.cfg.IndexDir == "" {
		return ""
	}
	return filepath.Join(s.cfg.IndexDir, "files-index-"+s.cfg.Bucket)
}

// saveSnapshot writes the index to snapshotPath unless it has not moved
// since the last one this server wrote (or read) at seq, and says at what
// sequence the file now is.
func (s *Server) saveSnapshot(seq uint64) uint64 {
	path := s.snapshotPath()
	snap, ok := s.usage.snapshot()
	if path == "" || !ok || snap.Seq == seq {
		return seq
	}
	snap.Bucket = s.cfg.Bucket
	snap.StreamCreated = s.store.ObjectStreamCachedInfo().Created.UnixNano()
	began := time.Now()
	if err := writeSnapshot(path, snap); err != nil {
		s.log.Warn("files index snapshot not written; the next start reads every file", "path", path, "err", err)
		return seq
	}
	s.log.Info("files index snapshot written", "path", path, "files", snap.Files, "seq", snap.Seq, "took", time.Since(began).Round(time.Millisecond))
	return snap.Seq
}

// snapshotter writes the index every snapshotEvery while it changes, and
// once more as the server stops.
func (s *Server) snapshotter() {
	if s.snapshotPath() == "" {
		return
	}
	saved := s.snapshotSeq.Load()
	t := time.NewTicker(snapshotEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.saveSnapshot(max(saved, s.snapshotSeq.Load()))
			return
		case <-t.C:
			saved = s.saveSnapshot(max(saved, s.snapshotSeq.Load()))
		}
	}
}

// loadSnapshot puts the snapshot at snapshotPath into the index when
// storage says it is still good, and says the stream sequence it holds:
// the files watch goes on from there. 0: there is none, or it was not
// good.
func (s *Server) loadSnapshot(ctx context.Context) uint64 {
	path := s.snapshotPath()
	if path == "" {
		return 0
	}
	snap, err := readSnapshot(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err == nil {
		err = s.checkSnapshot(ctx, snap.snapshotHeader)
	}
	if err != nil {
		s.log.Info("files index snapshot not used; reading every file", "path", path, "reason", err)
		return 0
	}
	s.usage.install(snap)
	s.snapshotSeq.Store(snap.Seq)
	return snap.Seq
}

// checkSnapshot says why a snapshot with header h cannot stand for the
// bucket's metas up to h.Seq, if it cannot.
func (s *Server) checkSnapshot(ctx context.Context, h snapshotHeader) error {
	if h.Bucket != s.cfg.Bucket {
		return fmt.Errorf("made of bucket %q", h.Bucket)
	}
	if age := time.Since(time.Unix(0, h.FullRead)); age > snapshotTrust {
		return fmt.Errorf("the index was last read in full %v ago", age.Round(time.Minute))
	}
	info, err := s.store.ObjectStreamInfo(ctx)
	if err != nil {
		return fmt.Errorf("files stream: %w", err)
	}
	if info.Created.UnixNano() != h.StreamCreated {
		return errors.New("made of another files stream (it was created again)")
	}
	purged, _, err := s.tombstonesPurged(ctx)
	if err != nil {
		return err
	}
	if purged > h.Seq {
		return fmt.Errorf("the sweep purged deletes past it (at %d, the snapshot at %d)", purged, h.Seq)
	}
	if h.Seq > 0 {
		_, err := s.leaderGet(ctx, store.MsgRequest{Seq: h.Seq, NextFor: subjects.ObjectMetas(s.cfg.Bucket)})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("no meta message at or after %d is left (the stream was purged)", h.Seq)
		}
		if err != nil {
			return fmt.Errorf("meta message at %d: %w", h.Seq, err)
		}
	}
	return nil
}

// tombstonesPurged is the highest stream sequence of a tombstone the sweep
// purged (0: none yet), and the sequence of the message that says so.
func (s *Server) tombstonesPurged(ctx context.Context) (through, at uint64, err error) {
	m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: subjects.TombstonesPurged(s.cfg.Bucket)})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("tombstones purged: %w", err)
	}
	through, err = strconv.ParseUint(string(m.Data), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("tombstones purged at %d: %q: %w", m.Sequence, m.Data, err)
	}
	return through, m.Sequence, nil
}

// recordTombstonesPurged raises the record of tombstones purged to through,
// before the sweep purges them: a snapshot older than a purged tombstone
// must not be used. Each write expects the message it replaces, so that two
// sweeps cannot lower it.
func (s *Server) recordTombstonesPurged(ctx context.Context, through uint64) error {
	for range 10 {
		have, at, err := s.tombstonesPurged(ctx)
		if err != nil {
			return err
		}
		if have >= through {
			return nil
		}
		m := nats.NewMsg(subjects.TombstonesPurged(s.cfg.Bucket))
		m.Data = []byte(strconv.FormatUint(through, 10))
		_, err = s.store.Publish(ctx, m, store.Expect{LastSeq: at, Rollup: true})
		if err == nil {
			return nil
		}
		if !store.WrongLastSequence(err) {
			return fmt.Errorf("record tombstones purged through %d: %w", through, err)
		}
	}
	return fmt.Errorf("record tombstones purged through %d: it kept changing", through)
}
