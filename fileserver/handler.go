package fileserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/subjects"
)

// requestTimeout bounds the work of one request, storage calls included.
const requestTimeout = 30 * time.Second

// call is one authenticated request in progress.
type call struct {
	ctx   context.Context
	req   micro.Request
	user  string
	admin bool
	token string // hashed session key, for logout
	// claimKey and claim are the request's record in the requests bucket
	// and the revision this run of it claimed (idempotent); claim is 0
	// when the request is not run under a claim.
	claimKey string
	claim    uint64
	// afterReply, when set, runs once the reply has left (idempotent's
	// record of the outcome).
	afterReply func()
}

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

// op handles an authenticated request; it returns the reply body or an error
// (a *subjects.Error for anything the caller should see as such).
type op func(c *call) (any, error)

// noReply is returned by an op that answered by other means (download).
type noReply struct{}

// async runs a handler in its own goroutine, so that a slow request
// (bcrypt, a long listing) does not hold up its endpoint.
func (s *Server) async(h func(micro.Request)) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		s.goBounded(func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("request handler panicked", "subject", req.Subject(), "panic", r)
					s.reply(req, nil, subjects.Errorf(subjects.CodeInternal, "internal error"))
				}
			}()
			h(req)
		})
	})
}

// keepalive tells the client every subjects.KeepaliveInterval that its
// request is being worked on, until stop: the client sends a request again
// only when its server falls silent (killed, frozen), not because the work
// is slow. Callers start it once the reply subject is known to be the
// requesting user's inbox: a keepalive to anyone else would tell them that
// someone made a request, and it is sent with the service identity.
func (s *Server) keepalive(reply string) (stop func()) {
	if !strings.HasPrefix(reply, subjects.InboxRoot+".") {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(subjects.KeepaliveInterval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		m := nats.NewMsg(reply)
		m.Header.Set(subjects.HeaderStatus, "100")
		_ = s.front.PublishMsg(m)
		t.Reset(subjects.KeepaliveInterval)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// goBounded runs f in a goroutine the server owns, at most cap(s.slots) at
// a time; it drops f when the server is stopping.
func (s *Server) goBounded(f func()) {
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	s.wg.Add(1)
	s.inflight.Add(1)
	s.lastStart.Store(time.Now().UnixNano())
	go func() {
		defer func() {
			s.inflight.Add(-1)
			<-s.slots
			s.wg.Done()
		}()
		f()
	}()
}

// authed checks the session and the reply subject, runs f and replies.
func (s *Server) authed(f op) func(micro.Request) {
	return func(req micro.Request) {
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		defer cancel()
		// Keepalives start once the reply subject is known to be the
		// user's own inbox. A token's user never changes, so the sessions
		// mirror tells whose it is at once; the session's read, which must
		// see a revocation, may wait out its stream's election for a
		// second, long enough for the client to send the request again.
		var stopKeepalive func()
		if user, ok := s.sessionsMirror.sessionUser(req.Headers().Get(subjects.HeaderSession)); ok && ownInbox(req, user) {
			stopKeepalive = s.keepalive(req.Reply())
		}
		defer func() {
			if stopKeepalive != nil {
				stopKeepalive()
			}
		}()
		c, err := s.authenticate(ctx, req)
		if err != nil {
			s.reply(req, nil, err)
			return
		}
		if stopKeepalive == nil {
			stopKeepalive = s.keepalive(req.Reply()) // the inbox is the user's
		}
		v, err := f(c)
		if _, ok := v.(noReply); !ok || err != nil {
			s.reply(req, v, err)
		}
		if c.afterReply != nil {
			c.afterReply()
		}
	}
}

// authenticate finds the session of a request. The session must be the
// user's whom the subject names (the broker let only that user publish
// it), and gate has made sure the reply goes to that user's inbox.
func (s *Server) authenticate(ctx context.Context, req micro.Request) (*call, error) {
	token := req.Headers().Get(subjects.HeaderSession)
	if token == "" {
		return nil, subjects.Errorf(subjects.CodeUnauthorized, "not logged in: no session token")
	}
	sess, err := s.lookupSession(ctx, token)
	if err != nil {
		return nil, err
	}
	if sent := subjects.UserOf(req.Subject()); sess.User != sent {
		return nil, subjects.Errorf(subjects.CodeUnauthorized, "session token of another user than %q: log in again", sent)
	}
	u, err := s.sessionUser(ctx, sess.User)
	if err != nil {
		if subjects.CodeOf(err) == subjects.CodeNotFound {
			return nil, subjects.Errorf(subjects.CodeUnauthorized, "user %q no longer exists", sess.User)
		}
		return nil, err
	}
	return &call{ctx: ctx, req: req, user: u.Name, admin: u.Admin, token: sessionKey(token)}, nil
}

// ownInbox says whether req was sent by user (its subject names user) from
// user's inbox, where only user's connections can subscribe.
func ownInbox(req micro.Request, user string) bool {
	return subjects.UserOf(req.Subject()) == user && subjects.OwnInbox(req.Subject(), req.Reply())
}

// admin restricts f to administrators.
func (s *Server) admin(f op) op {
	return func(c *call) (any, error) {
		if !c.admin {
			return nil, subjects.Errorf(subjects.CodeForbidden, "only an admin may do this")
		}
		return f(c)
	}
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
		// Each call to the requests bucket is tried a bounded time at once
		// (kvcalls.go): one sent to its stream's leader as it died would
		// otherwise hold the request, keepalives flowing, until its context
		// ended 30 s later.
		var rev uint64
		// A copy that finds the request in progress on a live server waits
		// a little for its outcome (stored just after its answer left)
		// before answering busy.
		waitUntil, wait := time.Now().Add(outcomeWait), 25*time.Millisecond
		for rev == 0 {
			// Claim first: a request is new far more often than not.
			var err error
			rev, err = s.kvCreate(c.ctx, s.requests, key, pending)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, wrapStorage("claim request", err)
			}
			// Claimed before (by us, if an attempt's answer was lost).
			e, err := s.kvGet(c.ctx, s.requests, key)
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
					rev, err = s.kvUpdate(c.ctx, s.requests, key, pending, e.Revision())
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
			dctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), writeAttempt)
			_ = s.requests.Delete(dctx, key, jetstream.LastRevision(rev))
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
			if _, err := s.kvUpdate(c.ctx, s.requests, key, b, rev); err != nil {
				s.log.Warn("could not remember request outcome", "err", err)
			}
		}
		return v, err
	}
}

// stillClaimed fails when the request c runs under a claim that is no
// longer this run's: a server frozen in the middle of a request finds, once
// thawed, that a retry has run it elsewhere (idempotent took the claim of a
// server it could not reach), and the client may have acted on that answer
// since (deleted the file put, put again the file deleted). Its writes must
// not follow. Checked right before the write that makes a change visible;
// busy, so that a client still waiting asks again and gets the outcome.
func (s *Server) stillClaimed(c *call) error {
	if c.claim == 0 {
		return nil
	}
	e, err := s.kvGet(c.ctx, s.requests, c.claimKey)
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

// writeAttempt bounds one storage write: one sent to a stream leader as it
// died is never answered, and a new leader is elected within seconds. The
// writes retried carry message IDs or expected revisions, so a repeat of
// one that was stored is harmless.
const writeAttempt = 2 * time.Second

// retryFor retries a storage write f on stream with backoff until it
// succeeds, ctx ends or storage turns read-only, writeAttempt at a time.
func (s *Server) retryFor(ctx context.Context, stream string, f func(context.Context) error) error {
	return s.retryStorage(ctx, stream, writeAttempt, time.Second, f)
}

// retryStorage runs a storage call f on stream, each attempt bounded by
// attempt, again after a timeout or a moment of unavailability (backing
// off up to maxBackoff), until it succeeds, ctx ends or storage turns
// read-only. A stream leader elected meanwhile ends the back-off at once.
// An attempt in flight goes again at once when its own stream elects a
// leader while it waits: it was sent to the leader that died, and the new
// one never answers it. (At an election of any stream, every call waiting
// on a leader that is slow rather than dead would be sent twice, and on
// brokers stalled by their disk, elections come often. Calls sent twice
// are made harmless by their callers: message IDs, expected sequences.)
func (s *Server) retryStorage(ctx context.Context, stream string, attempt, maxBackoff time.Duration, f func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		elected, streamElected := s.elections.wait(stream)
		actx, cancel := context.WithTimeout(ctx, attempt)
		start := time.Now()
		var orphaned atomic.Bool
		stop := context.AfterFunc(streamElected, func() {
			time.AfterFunc(max(0, orphanAfter-time.Since(start)), func() {
				orphaned.Store(true)
				cancel()
			})
		})
		err := f(actx)
		stop()
		cancel()
		if err != nil && orphaned.Load() && errors.Is(err, context.Canceled) && ctx.Err() == nil {
			err = errOrphaned
		}
		if err == nil || !storageUnavailable(err) || ctx.Err() != nil {
			return err
		}
		if s.readOnly.Load() {
			return errReadOnly
		}
		select {
		case <-ctx.Done():
			return err
		case <-elected.Done(): // back-off kept: elections come in bursts
			continue
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// reply sends v as JSON, or err as a micro error (the same headers micro's
// req.Error sets) with its wire code. It publishes on the connection rather
// than through micro's request: replies are sent from other goroutines
// after the micro handler has returned, and micro's request is not safe for
// that. (So `nats micro stats` counts requests but not errors; the status
// reply carries this instance's error count.)
func (s *Server) reply(req micro.Request, v any, err error) {
	m := nats.NewMsg(req.Reply())
	if err != nil {
		code := subjects.CodeOf(err)
		msg := err.Error()
		if code == subjects.CodeInternal {
			if storageUnavailable(err) {
				code = subjects.CodeUnavailable
				msg = "storage temporarily unavailable: " + err.Error()
			} else {
				s.log.Error("request failed", "subject", req.Subject(), "err", err)
			}
		}
		m.Header.Set(subjects.HeaderErrorCode, string(code))
		m.Header.Set(subjects.HeaderErrorText, msg)
		if reason := subjects.ReasonOf(err); reason != "" {
			m.Header.Set(subjects.HeaderErrorReason, string(reason))
		}
		s.errors.Add(1)
	} else {
		if v == nil {
			v = subjects.Empty{}
		}
		raw, ok := v.(json.RawMessage)
		if !ok {
			if raw, err = json.Marshal(v); err != nil {
				s.log.Error("reply not encodable", "subject", req.Subject(), "err", err)
				return
			}
		}
		m.Data = raw
	}
	if m.Subject == "" {
		return // a request without a reply subject wants no answer
	}
	if !subjects.OwnInbox(req.Subject(), m.Subject) {
		// gate dropped such requests; this is the last line.
		s.log.Error("reply not sent: reply subject outside the user's inbox", "subject", req.Subject(), "reply", m.Subject)
		return
	}
	if err := s.front.PublishMsg(m); err != nil {
		s.log.Warn("reply failed", "subject", req.Subject(), "err", err)
	}
}

// orphanAfter is how long a storage call may have gone unanswered for a
// leader election to cut it short.
const orphanAfter = 250 * time.Millisecond

// errOrphaned: a storage call cut short by a leader election (retryStorage).
var errOrphaned = errors.New("storage call unanswered across a leader election")

// storageUnavailable says whether err is JetStream being briefly unreachable
// (leader election, broker restart): the client should retry.
func storageUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.Code == 503 || writeInProcess(apiErr)) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errOrphaned) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || // async publishes pending when the broker went
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// writeInProcess says JetStream refused a write because an earlier one
// with the same message ID, or to the same subject with an expected last
// sequence, is still being replicated: typically our own earlier attempt,
// whose answer was lost with a leader. It will be applied or dropped in a
// moment, and the write sent again is then answered as a duplicate or
// checked for real; taking it for a conflict reported a failure for a write
// that was then stored.
func writeInProcess(apiErr *jetstream.APIError) bool {
	return apiErr.ErrorCode == errCodeDuplicateInProcess || apiErr.ErrorCode == errCodeSubjectInProcess
}

// JetStream error codes nats.go has no names for.
const (
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158 // "duplicate message id is in process"
	errCodeSubjectInProcess   jetstream.ErrorCode = 10164 // "wrong last sequence" (constant): the subject has a write in flight
)

// decode parses a JSON request strictly, as the wire contract says
// (subjects.Decode): unknown fields and trailing data are errors, so a
// mistyped field is reported instead of silently ignored, and a request
// missing a required field is refused before a handler looks it up.
func decode(data []byte, v any) error {
	return subjects.Decode(data, v)
}

func decodeCall[T any](c *call) (T, error) {
	var v T
	return v, decode(c.req.Data(), &v)
}

func wrapStorage(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *subjects.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// StorageUnavailable says whether a storage call failed for want of an
// answer (a deadline, no responders, a broker gone) or because JetStream
// is electing a leader: made again, it may succeed.
func StorageUnavailable(err error) bool { return storageUnavailable(err) }
