package fileserver

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// chunkSeq is the stream sequence of chunk k of o, for a download that
// starts in the middle of a file (subjects.DownloadRequest.Seek). A chunk
// carries no index JetStream can look up, but a file whose first and last
// chunks are Chunks-1 sequences apart has all of them next to each other
// (its chunk subject holds exactly Chunks messages, in order), so chunk k
// is the first's sequence plus k. A file stored beside others, or whose
// upload was resumed, may not be: then the client reads from the start.
func (s *Server) chunkSeq(c *call, o object, k uint64) (uint64, error) {
	subj := s.chunkSubject(o.info.NUID)
	first, err := s.leaderGet(c.ctx, store.MsgRequest{Seq: 1, NextFor: subj})
	if err == nil {
		var last *jetstream.RawStreamMsg
		if last, err = s.leaderGet(c.ctx, store.MsgRequest{LastFor: subj}); err == nil {
			chunks := uint64(o.info.Chunks)
			if k >= chunks {
				return 0, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonBadOffset, "chunk %d is past the last of %q", k, o.info.Name)
			}
			if last.Sequence-first.Sequence+1 != chunks {
				return 0, subjects.Rejectf(subjects.CodeConflict, subjects.ReasonNotContiguous, "the chunks of %q are not contiguous: download it from the start", o.info.Name)
			}
			return first.Sequence + k, nil
		}
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, subjects.Errorf(subjects.CodeConflict, "%q changed while it was read; try again", o.info.Name)
	}
	return 0, wrapStorage(fmt.Sprintf("find chunk %d of %q", k, o.info.Name), err)
}
