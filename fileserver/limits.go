package fileserver

// Limit checks on the usage indexes (usage.go): each is made on the
// indexes as they are, and again once they have caught up with storage
// when it would refuse, or pass with less than a quarter to spare.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// syncWait bounds how long a refusal waits for the indexes to catch up.
const syncWait = 5 * time.Second

// limited runs check, a limit check on the indexes, first against limits
// a quarter lower (near): a pass with that much room to spare needs no
// more. Otherwise the indexes catch up with storage and check runs against
// the real limits: a refusal must not rest on a change this server has not
// seen yet (or on an index still loading, after a start or a watch that
// failed), and a pass near a limit must not miss what the user did a moment
// ago on the other server.
func (s *Server) limited(ctx context.Context, check func(near bool) error) error {
	if err := check(true); err == nil {
		return nil
	}
	return s.synced(ctx, check)
}

// synced runs check against the real limits once the indexes have caught
// up with storage.
func (s *Server) synced(ctx context.Context, check func(near bool) error) error {
	if err := s.syncUsage(ctx); err != nil {
		s.log.Warn("usage index may lag storage; checking limits on it as it is", "err", err)
	}
	return check(false)
}

// lowered is limit, or a quarter less (at least 1) when near.
func lowered[N int | int64](limit N, near bool) N {
	if near {
		return limit - max(1, limit/4)
	}
	return limit
}

// admitUpload checks that user may open an upload of size bytes (-1:
// unknown); credit is the size of the user's own file it replaces. An open
// starts a transfer of more than one request, so it can afford to check on
// indexes brought up to date, which takes a moment: an index lagging by two
// opens made on the other server would let a third one past a limit of
// two. When they cannot be brought up to date at once (a broker's death
// leaves a watch behind, or its stream without a leader, for seconds), a
// check with a quarter of every limit to spare is enough, as for any other
// request, and only an open near a limit waits for them.
func (s *Server) admitUpload(ctx context.Context, user string, size, credit int64) error {
	if s.cfg.MaxOpenUploads <= 0 && s.cfg.MaxTransfers <= 0 && s.cfg.UserQuota <= 0 {
		return nil
	}
	check := func(near bool) error {
		if limit := s.cfg.MaxOpenUploads; limit > 0 {
			if n := s.usage.openUploads(user); n >= lowered(limit, near) {
				return subjects.Errorf(subjects.CodeQuota, "%s has %d unfinished uploads, the most a user may have: finish or abort one (an upload idle for %v is dropped)", user, n, s.cfg.UploadIdle)
			}
		}
		if err := s.checkTransfers(ctx, user, downloadKey{}, near); err != nil {
			return err
		}
		return s.checkQuota(user, "", max(size, 0), credit, near)
	}
	return s.onIndexesNow(ctx, s.syncUsage, check)
}

// onIndexesNow runs check against the real limits once sync has brought
// the indexes up to date. When it cannot within syncQuick (a broker's
// death leaves a watch behind, or its stream without a leader, for
// seconds), a check with a quarter of every limit to spare is enough, and
// only a check near a limit waits for them, as long as a refusal would.
func (s *Server) onIndexesNow(ctx context.Context, sync func(context.Context) error, check func(near bool) error) error {
	quick, cancel := context.WithTimeout(ctx, syncQuick)
	err := sync(quick)
	cancel()
	if err == nil {
		return check(false)
	}
	if check(true) == nil {
		return nil
	}
	return s.synced(ctx, check)
}

// syncQuick is how long an upload's open waits for the indexes before it
// settles for a check with room to spare: bringing them up to date takes
// milliseconds while every stream has its leader and every watch its
// consumer.
const syncQuick = time.Second

// checkTransfers refuses a transfer to a user running the most at once
// (lowered when near).
func (s *Server) checkTransfers(ctx context.Context, user string, except downloadKey, near bool) error {
	limit := s.cfg.MaxTransfers
	if limit <= 0 {
		return nil
	}
	s.directActivity(ctx, user)
	if n := s.usage.transfers(user, time.Now(), except); n >= lowered(limit, near) {
		return subjects.Errorf(subjects.CodeQuota, "%s is running %d transfers, the most a user may run at once: wait for one to finish", user, n)
	}
	return nil
}

// directActivity brings the activity of user's direct uploads that look
// idle up to the time of their last chunk stored, which only the stream
// knows: a direct upload runs for as long as its client publishes.
func (s *Server) directActivity(ctx context.Context, user string) {
	for _, id := range s.usage.quietDirect(user, time.Now()) {
		if m, err := s.leaderGet(ctx, store.MsgRequest{LastFor: s.chunkSubject(id)}); err == nil {
			s.usage.storedAt(id, m.Time)
		}
	}
}

// admitTransfer checks that the user may start a transfer made in one
// request (subjects.Put, subjects.Get): however short, it counts as one.
func (s *Server) admitTransfer(c *call) error {
	if s.cfg.MaxTransfers <= 0 {
		return nil
	}
	return s.limited(c.ctx, func(near bool) error { return s.checkTransfers(c.ctx, c.user, downloadKey{}, near) })
}

// checkQuota refuses to let user store size bytes for the upload except
// (which the index may count already) when that takes them past the quota
// (lowered when near); credit is what the file it replaces gives back.
func (s *Server) checkQuota(user, except string, size, credit int64, near bool) error {
	quota := s.cfg.UserQuota
	more := size - credit
	if quota <= 0 || more <= 0 {
		return nil
	}
	used := s.usage.used(user, except)
	if used+more <= lowered(quota, near) {
		return nil
	}
	return subjects.Errorf(subjects.CodeQuota, "storage quota reached: %s uses %s of %s, and this upload needs %s more", user, bytesize.Format(used), bytesize.Format(quota), bytesize.Format(more))
}

// checkFileSize refuses a file of size bytes over the maximum.
func (s *Server) checkFileSize(name string, size int64) error {
	if limit := s.cfg.MaxFileSize; limit > 0 && size > limit {
		return subjects.Errorf(subjects.CodeTooLarge, "%q: %s is over the maximum file size of %s", name, bytesize.Format(size), bytesize.Format(limit))
	}
	return nil
}

// ownSize is the size of o if it is live and user owns it, else 0.
func ownSize(o object, user string) int64 {
	if o.live() && o.owner() == user {
		return int64(o.info.Size)
	}
	return 0
}

// admitCommit checks an upload's actual size before it becomes its file,
// replacing replaced.
func (s *Server) admitCommit(ctx context.Context, rec uploadRecord, replaced object) error {
	if err := s.checkFileSize(rec.Name, rec.Bytes); err != nil {
		return err
	}
	if s.cfg.UserQuota <= 0 {
		return nil
	}
	credit := ownSize(replaced, rec.Owner)
	check := func(near bool) error { return s.checkQuota(rec.Owner, rec.ID, rec.Bytes, credit, near) }
	// A file stored a moment ago through the other server counts: the
	// files index catches up with storage first (one read through the
	// files stream's leader, and the index's watch, milliseconds): a check
	// with room to spare alone would admit a commit that goes past the
	// quota with a file the other server stored milliseconds before. While
	// the index cannot catch up at once, room to spare is enough, as at an
	// open.
	return s.onIndexesNow(ctx, s.syncFiles, check)
}

// admitChunk checks a chunk of n bytes before it is stored: an upload may
// not grow past the maximum file size, nor past its announced size beyond
// the quota, counting the chunks in flight before it. It runs on the
// upload's writer, which owns u.rec and u.inflight.
func (u *upload) admitChunk(n int) error {
	s := u.s
	after := u.rec.Bytes + int64(n)
	for _, p := range u.inflight {
		after += int64(len(p.data))
	}
	if err := s.checkFileSize(u.rec.Name, after); err != nil {
		return fmt.Errorf("%w; nothing was stored", err)
	}
	if s.cfg.UserQuota <= 0 || after <= u.rec.Size {
		return nil // open checked the announced size
	}
	credit := s.usage.fileSize(u.rec.Name, u.rec.Owner)
	ctx, cancel := context.WithTimeout(u.ctx, syncWait)
	defer cancel()
	err := s.limited(ctx, func(near bool) error { return s.checkQuota(u.rec.Owner, u.rec.ID, after, credit, near) })
	if err != nil {
		return fmt.Errorf("%w; nothing was stored", err)
	}
	return nil
}

// drop ends an upload refused for a limit: its chunks and record go at once
// (not when the janitor finds it idle), from another goroutine, since
// aborting stops this writer.
func (u *upload) drop(err error) {
	s, id := u.s, u.rec.ID
	s.log.Info("upload refused: over a limit", "upload", id, "name", u.rec.Name, "user", u.rec.Owner, "err", err)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		s.abortUpload(ctx, id)
	}()
}

// admitDownload counts the download batch r of a file of size bytes, and
// refuses the first batch of a download when its user runs the most
// transfers at once. r.Max is set.
func (s *Server) admitDownload(c *call, r subjects.DownloadRequest, size int64) error {
	if s.cfg.MaxTransfers <= 0 {
		return nil
	}
	reply := c.req.Reply()
	k := downloadKey{user: c.user, id: reply[:max(strings.LastIndexByte(reply, '.'), 0)]}
	if r.After == 0 && !s.usage.running(k, time.Now()) {
		if err := s.limited(c.ctx, func(near bool) error { return s.checkTransfers(c.ctx, c.user, k, near) }); err != nil {
			return err
		}
	}
	lease := TransferIdle
	if r.Offset+int64(r.Max)*subjects.ChunkSize >= size {
		lease = 0 // the last batch: the download is done once it is sent
	}
	var until time.Time
	if lease > 0 {
		until = time.Now().Add(lease)
	}
	s.usage.download(k, until)
	body, _ := json.Marshal(downloadNotice{Instance: s.instance, User: k.user, Download: k.id, LeaseMS: lease.Milliseconds()})
	if err := s.nc.Publish(subjects.TransferEvents, body); err != nil {
		s.log.Debug("download notice not sent", "err", err)
	}
	return nil
}
