package fileserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// requestKey identifies a mutating request across its retries ("" when the
// client sent no HeaderRequestID).
func (c *call) requestKey() string {
	id := c.req.Headers().Get(subjects.HeaderRequestID)
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c.user + "\x00" + c.req.Subject() + "\x00" + id))
	return hex.EncodeToString(sum[:])
}

// outcome is what the requests bucket remembers of a mutating request:
// that it is in progress (Pending, since Started), or how it ended.
type outcome struct {
	Pending  bool            `json:"pending,omitempty"`
	Started  time.Time       `json:"started,omitempty"`
	Instance string          `json:"instance,omitempty"` // running it
	Code     subjects.Code   `json:"code,omitempty"`
	Message  string          `json:"message,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"`
}

// pendingStale is how long a request may stay in progress before a retry
// may run it again: longer than any request is allowed to run, so only a
// request whose server died in the middle is run again.
const pendingStale = requestTimeout + 5*time.Second

// outcomeWait is how long a copy of a request in progress waits for the
// first one's outcome before answering busy.
const outcomeWait = 2 * time.Second

// idempotent runs a user-admin request at most once per HeaderRequestID
// (from the same user): it claims the ID in the requests bucket before
// running, answers a retry that arrives meanwhile with "busy" (the client
// retries) and a later one with the first outcome. So a client retrying
// after a lost or slow reply, maybe on the other server, never removes a
// user twice. File requests need no claim (requestMeta).
func (s *Server) idempotent(f op) op {
	return func(c *call) (any, error) {
		key := c.requestKey()
		if key == "" {
			return f(c)
		}
		pending, _ := json.Marshal(outcome{Pending: true, Started: time.Now().UTC(), Instance: s.instance})
		// Calls to the requests bucket are bounded an attempt at a time
		// (internal/store/kv.go).
		var rev uint64
		// A copy that finds the request in progress on a live server waits
		// a little for its outcome (stored just after its answer left)
		// before answering busy.
		waitUntil, wait := time.Now().Add(outcomeWait), 25*time.Millisecond
		for rev == 0 {
			// Claim first: a request is new far more often than not.
			var err error
			rev, err = s.store.KVCreate(c.ctx, s.requests, key, pending)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, wrapStorage("claim request", err)
			}
			// Claimed before (by us, if an attempt's answer was lost).
			e, err := s.store.KVGet(c.ctx, s.requests, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				continue // released meanwhile: claim again
			case err != nil:
				return nil, wrapStorage("look up request", err)
			case bytes.Equal(e.Value(), pending):
				rev = e.Revision() // our own claim, whose answer was lost
			default:
				var o outcome
				if err := json.Unmarshal(e.Value(), &o); err != nil {
					return nil, fmt.Errorf("request record: %w", err)
				}
				switch {
				case o.Pending && time.Since(o.Started) < pendingStale && s.instanceAlive(c.ctx, o.Instance):
					if time.Now().After(waitUntil) {
						return nil, subjects.Errorf(subjects.CodeBusy, "the same request is still in progress")
					}
					select {
					case <-c.ctx.Done():
						return nil, wrapStorage("look up request", c.ctx.Err())
					case <-time.After(wait):
					}
					wait = min(2*wait, 250*time.Millisecond)
				case o.Pending: // its server died: run it again
					rev, err = s.store.KVUpdate(c.ctx, s.requests, key, pending, e.Revision())
					if err != nil {
						if c.ctx.Err() != nil {
							return nil, wrapStorage("claim request", err)
						}
						rev = 0
						continue
					}
				case o.Code != "":
					return nil, &subjects.Error{Code: o.Code, Message: o.Message}
				default:
					return o.Body, nil
				}
			}
		}
		c.claimKey, c.claim = key, rev
		v, err := f(c)
		var o outcome
		switch {
		case err != nil && (subjects.CodeOf(err).Retryable() || subjects.CodeOf(err) == subjects.CodeInternal):
			// Not final: free the ID so that a retry runs again. (Left
			// claimed, the claim goes stale and a retry runs it all the same.)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), store.WriteAttempt)
			_ = s.store.KVDeleteAt(dctx, s.requests, key, rev)
			cancel()
			return v, err
		case err != nil:
			o.Code, o.Message = subjects.CodeOf(err), err.Error()
		default:
			o.Body, _ = json.Marshal(v)
		}
		b, _ := json.Marshal(o)
		// Stored once the answer has left: the client waits for one storage
		// round trip less. A retry is sent only when no answer came (a
		// reply lost, a server silent), and one that finds the claim
		// still pending on this live server is answered busy and asks
		// again a moment later.
		c.afterReply = func() {
			if _, err := s.store.KVUpdate(c.ctx, s.requests, key, b, rev); err != nil {
				s.log.Warn("could not remember request outcome", "err", err)
			}
		}
		return v, err
	}
}

// stillClaimed fails when the request c runs under a claim that is no
// longer this run's: a retry has run the request elsewhere meanwhile
// (idempotent takes over the claim of a server it cannot reach), its
// client may have acted on that answer, and this run must not write after
// it. Checked right before the write that makes a change visible; busy, so
// that a client still waiting asks again and gets the outcome.
func (s *Server) stillClaimed(c *call) error {
	if c.claim == 0 {
		return nil
	}
	e, err := s.store.KVGet(c.ctx, s.requests, c.claimKey)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return wrapStorage("check request claim", err)
	}
	if err != nil || e.Revision() != c.claim {
		s.log.Warn("request run again elsewhere meanwhile; not writing", "user", c.user)
		return subjects.Errorf(subjects.CodeBusy, "the same request was run again meanwhile; ask again for its outcome")
	}
	return nil
}

// instanceAlive says whether a file server instance may still be running a
// request: it answers a micro PING, or cannot be told dead yet (a frozen
// one, until the broker drops it).
func (s *Server) instanceAlive(ctx context.Context, instance string) bool {
	if instance == "" || instance == s.instance {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	_, err := s.front.RequestWithContext(ctx, subjects.DiscoveryPing+"."+instance, nil)
	return !errors.Is(err, nats.ErrNoResponders)
}

// requestMeta is putMeta for the request c, of which it is the write named
// part (a rename makes two). It says whether an earlier run of the request
// made the write already (done).
//
// A request runs at most once per request ID: the write carries the
// request's ID as its message ID, and JetStream stores one message per ID
// within the stream's duplicate window (two minutes), answering any other
// with the first one's sequence. So a late copy of a request (held by a
// frozen server while a retry ran it elsewhere, or still running when its
// client gave up on a slow server) finds its write done and never makes it
// a second time, after the client may have acted on the first answer. A run
// only writes within requestTimeout of its start, well inside the window.
func (s *Server) requestMeta(c *call, info jetstream.ObjectInfo, expectSeq uint64, part string) (seq uint64, done bool, err error) {
	key := c.requestKey()
	if key == "" {
		seq, err = s.putMeta(c.ctx, info, expectSeq)
		return seq, false, err
	}
	if dl, ok := c.ctx.Deadline(); ok && !time.Now().Before(dl) {
		// A run that outlived its time, frozen maybe: its client has
		// given up on it, and its write might come after the window.
		return 0, false, wrapStorage("write file info", context.DeadlineExceeded)
	}
	return s.writeMeta(c.ctx, info, expectSeq, key+part)
}

// metaRequest is the object metadata key that records which request wrote
// a meta message, so that a retry of that request (whose first reply was
// lost, maybe with the storage briefly away) sees its own work done.
const metaRequest = "ftfs-request"

// doneBy says whether o was written by the request c.
func doneBy(c *call, o object) bool {
	key := c.requestKey()
	return key != "" && o.seq != 0 && o.info.Metadata[metaRequest] == key
}

// stamped returns info with its metadata marked as written by c.
func stamped(c *call, info jetstream.ObjectInfo) jetstream.ObjectInfo {
	md := make(map[string]string, len(info.Metadata)+1)
	for k, v := range info.Metadata {
		md[k] = v
	}
	if key := c.requestKey(); key != "" {
		md[metaRequest] = key
	} else {
		delete(md, metaRequest)
	}
	// Who made the change, for watchers; a rename's marks (markRename)
	// belong to that rename's writes only.
	md[metaBy] = c.user
	delete(md, metaRenamedFrom)
	delete(md, metaRenamedTo)
	info.Metadata = md
	return info
}
