package fileserver

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/internal/store"
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
	// access is what user may do, read on first use (accessOf), from
	// accessRead, the read of the rules started as the request came.
	access     *accessView
	accessRead *accessRead
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
		rules := s.startAccessRead() // alongside the session's read
		c, err := s.authenticate(ctx, req)
		if err != nil {
			s.reply(req, nil, err)
			return
		}
		c.accessRead = rules
		if stopKeepalive == nil {
			stopKeepalive = s.keepalive(req.Reply()) // the inbox is the user's
		}
		v, err := f(c)
		if _, ok := v.(noReply); !ok || err != nil {
			s.reply(req, v, err)
		} else {
			s.answered(req, nil)
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

// reply sends v as JSON, or err as a micro error (the same headers micro's
// req.Error sets) with its wire code. It publishes on the connection rather
// than through micro's request: replies are sent from other goroutines
// after the micro handler has returned, and micro's request is not safe for
// that. (So `nats micro stats` counts requests but not errors; the status
// reply carries this instance's error count.)
func (s *Server) reply(req micro.Request, v any, err error) {
	s.answered(req, err)
	m := nats.NewMsg(req.Reply())
	if err != nil {
		code := subjects.CodeOf(err)
		msg := err.Error()
		if code == subjects.CodeInternal {
			if store.Unavailable(err) {
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
