package fileserver

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// directGet is JetStream's direct-get request, batch form (nats-server 2.11+).
type directGet struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// download checks the request and has JetStream send the next batch of
// chunks straight to the client's inbox: the content does not pass through
// this process, and since the cursor (a stream sequence) travels with each
// request, any instance can serve the next batch when this one dies.
func (s *Server) download(c *call) (any, error) {
	r, err := decodeCall[subjects.DownloadRequest](c)
	if err != nil {
		return nil, err
	}
	if err := subjects.ValidName(r.Name); err != nil {
		return nil, err
	}
	// Every batch: a rule changed during a download stops it.
	if err := s.needAccess(c, r.Name, mayRead, "read"); err != nil {
		return nil, err
	}
	o, err := s.liveObject(c.ctx, r.Name)
	if err != nil {
		return nil, err
	}
	if o.info.NUID != r.Version {
		return nil, subjects.Errorf(subjects.CodeConflict, "%q changed since the download started (version %s is now %s)", r.Name, r.Version, o.info.NUID)
	}
	// The position must lie within the file (Validate refused a negative
	// offset). Every chunk of a version is stored before its meta message,
	// so a cursor at or past that message's sequence is past the last chunk
	// (and After+1 would wrap to 0 at the top: the file from its start).
	if r.Offset > int64(o.info.Size) {
		return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonBadOffset, "offset %d is beyond the end of %q (%d bytes)", r.Offset, r.Name, o.info.Size)
	}
	if r.After >= o.seq {
		return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonBadOffset, "cursor %d is past the last chunk of %q", r.After, r.Name)
	}
	if r.Max <= 0 || r.Max > subjects.DownloadBatch {
		r.Max = subjects.DownloadBatch
	}
	if err := s.admitDownload(c, r, int64(o.info.Size)); err != nil {
		return nil, err
	}
	start := r.After + 1
	if r.Seek && r.After == 0 && r.Offset > 0 {
		if start, err = s.chunkSeq(c, o, uint64(r.Offset/subjects.ChunkSize)); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(directGet{Seq: start, NextFor: s.chunkSubject(o.info.NUID), Batch: r.Max})
	if err != nil {
		return nil, err
	}
	// gate has checked that the reply subject is the user's inbox. The
	// direct get goes through the users' account's import of it, so that
	// JetStream's answer can only land there.
	err = s.front.PublishMsg(&nats.Msg{
		Subject: subjects.DownloadImport,
		Reply:   c.req.Reply(),
		Data:    body,
	})
	if err != nil {
		return nil, wrapStorage(fmt.Sprintf("download %q", r.Name), err)
	}
	// The batch's chunks, as admitDownload reckons them: JetStream sends
	// them, not this process.
	s.countServed("download", min(int64(r.Max)*subjects.ChunkSize, int64(o.info.Size)-r.Offset))
	return noReply{}, nil
}
