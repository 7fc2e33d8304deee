package fileserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// bcryptCost is bcrypt's work factor for stored passwords.
const bcryptCost = 10

// userRecord is a user as stored in the users bucket, keyed by name.
type userRecord struct {
	Name    string    `json:"name"`
	Hash    []byte    `json:"hash"`
	Admin   bool      `json:"admin"`
	Created time.Time `json:"created"`
}

// sessionRecord is a session as stored in the sessions bucket, keyed by the
// SHA-256 of its token so that the bucket never holds a usable token.
type sessionRecord struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// dummyHash makes a login for an unknown user cost as much as a wrong
// password, so that timing does not tell which user names exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("ftfs-no-such-user"), bcryptCost)

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (s *Server) getUser(ctx context.Context, name string) (userRecord, error) {
	var u userRecord
	if subjects.ValidUser(name) != nil {
		return u, subjects.Errorf(subjects.CodeNotFound, "no user %q", name)
	}
	v, err := s.readKV(ctx, s.users, s.usersMirror, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return u, subjects.Errorf(subjects.CodeNotFound, "no user %q", name)
	}
	if err != nil {
		return u, wrapStorage("read user", err)
	}
	if err := json.Unmarshal(v, &u); err != nil {
		return u, fmt.Errorf("user %q: corrupt record: %w", name, err)
	}
	return u, nil
}

// sessionUser is the user of a valid session, from the mirror of the users
// bucket when it has them (one storage call less for every request), else
// from the bucket. Removing a user revokes their sessions in the sessions
// bucket, which every request reads, so the mirror's lag (a moment, while
// its watch delivers) matters only to a login in the moment of the
// user's removal, as much as the read of a bucket replica would.
func (s *Server) sessionUser(ctx context.Context, name string) (userRecord, error) {
	var u userRecord
	if v, ok := s.usersMirror.get(name); ok && s.usersMirror.loaded.Load() && json.Unmarshal(v, &u) == nil && u.Name == name {
		return u, nil
	}
	return s.getUser(ctx, name)
}

// checkPassword returns the user if the password is right. Unknown users and
// wrong passwords get the same error, after the same bcrypt work.
func (s *Server) checkPassword(ctx context.Context, name, password string) (userRecord, error) {
	u, err := s.getUser(ctx, name)
	if err != nil && subjects.CodeOf(err) != subjects.CodeNotFound {
		return u, err
	}
	hash := u.Hash
	if err != nil {
		hash = dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || err != nil {
		return userRecord{}, subjects.Errorf(subjects.CodeUnauthorized, "wrong user name or password")
	}
	return u, nil
}

func (s *Server) lookupSession(ctx context.Context, token string) (sessionRecord, error) {
	var sess sessionRecord
	v, err := s.readKV(ctx, s.sessions, s.sessionsMirror, sessionKey(token))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sess, subjects.Errorf(subjects.CodeUnauthorized, "session expired or revoked: log in again")
	}
	if err != nil {
		return sess, wrapStorage("read session", err)
	}
	if err := json.Unmarshal(v, &sess); err != nil {
		return sess, fmt.Errorf("corrupt session record: %w", err)
	}
	if time.Now().After(sess.Expires) {
		return sess, subjects.Errorf(subjects.CodeUnauthorized, "session expired: log in again")
	}
	return sess, nil
}

// connectingSession is the session of a connecting client's token, from
// the sessions mirror when it holds it, else as lookupSession reads it.
// Right after a broker's death the sessions stream may wait for a new
// leader for seconds; every client that was connected through that broker
// reconnects at once, and a fresh command connects then too, so the
// mirror answers them without that wait. What it may miss: a revocation
// made in the instant before, not yet delivered by its watch. Such a
// connection gets no further: every request reads its session from the
// bucket itself (lookupSession), and ends when it is gone.
func (s *Server) connectingSession(ctx context.Context, token string) (sessionRecord, error) {
	var sess sessionRecord
	if v, ok := s.sessionsMirror.get(sessionKey(token)); ok && s.sessionsMirror.loaded.Load() &&
		json.Unmarshal(v, &sess) == nil && sess.User != "" && time.Now().Before(sess.Expires) {
		return sess, nil
	}
	return s.lookupSession(ctx, token)
}

// undecided says that err is storage's failure to answer, not a verdict
// on the credentials.
func undecided(err error) bool {
	if err == nil {
		return false
	}
	code := subjects.CodeOf(err)
	return code == subjects.CodeUnavailable || code == subjects.CodeBusy || store.Unavailable(err)
}

func (s *Server) putUser(ctx context.Context, u userRecord, create bool) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if create {
		_, err = s.store.KVCreate(ctx, s.users, u.Name, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return subjects.Errorf(subjects.CodeConflict, "user %q exists already", u.Name)
		}
	} else {
		_, err = s.store.KVPut(ctx, s.users, u.Name, b)
	}
	return wrapStorage("write user", err)
}

// bootstrapAdmin creates the first admin from FTFS_ADMIN_PASSWORD when the
// system has no user at all; otherwise there is no default account.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	if s.cfg.AdminPassword == "" {
		return nil
	}
	if err := subjects.ValidPassword(s.cfg.AdminPassword); err != nil {
		return fmt.Errorf("%s: %w", subjects.EnvAdminPassword, err)
	}
	return store.RetryStartup(ctx, s.log, "create first admin", func(ctx context.Context) error {
		names, err := s.store.KVKeys(ctx, s.users)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return nil // users exist: leave them alone
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(s.cfg.AdminPassword), bcryptCost)
		if err != nil {
			return err
		}
		err = s.putUser(ctx, userRecord{Name: AdminUser, Hash: hash, Admin: true, Created: time.Now().UTC()}, true)
		if subjects.CodeOf(err) == subjects.CodeConflict {
			return nil // the other instance was quicker
		}
		if err == nil {
			s.audit("user added", "user", AdminUser, "admin", true, "by", "first start")
		}
		return err
	})
}

// serveAuthCallout answers the broker's authorization requests for every
// connection that is not a service identity. The user connection gets
// exactly the subjects of subjects.UserPublish and UserSubscribe.
func (s *Server) serveAuthCallout() error {
	var err error
	s.authSub, err = s.nc.QueueSubscribe(subjects.AuthCallout, subjects.QueueGroup, func(m *nats.Msg) {
		s.goBounded(func() { s.authorize(m) })
	})
	if err != nil {
		return fmt.Errorf("subscribe to auth callout: %w", err)
	}
	return nil
}

func (s *Server) authorize(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		s.log.Warn("auth callout: undecodable request", "err", err)
		return
	}
	// Answer within the broker's wait, or the answer is lost.
	ctx, cancel := context.WithTimeout(s.ctx, subjects.AuthCalloutTimeout-time.Second)
	defer cancel()

	g, err := s.authorizeConnect(ctx, req.ConnectOptions, req.ClientInformation.Host)
	if undecided(err) {
		// Storage could not say: no verdict, rather than a refusal the
		// client would take for a wrong password. The broker refuses
		// once its wait is over, and the client, whose refusal came
		// that late, knows no file server decided and tries again
		// (client.Dial).
		s.log.Warn("auth callout: credentials not checked; leaving it to the broker's timeout", "host", req.ClientInformation.Host, "err", err)
		return
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if err != nil {
		// The broker logs this text and tells the client only
		// "Authorization Violation": a throttled connection looks like a
		// wrong password to it (the Login endpoint says CodeThrottled).
		resp.Error = err.Error()
	} else {
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Name = g.user
		uc.Audience = g.account
		uc.Expires = g.expires.Unix()
		uc.Pub.Allow.Add(g.pub...)
		uc.Sub.Allow.Add(g.sub...)
		if g.payload > 0 {
			uc.Limits.Payload = g.payload
		}
		ujwt, err := uc.Encode(s.issuer)
		if err != nil {
			s.log.Error("auth callout: sign user", "err", err)
			resp.Error = "internal error"
		} else {
			resp.Jwt = ujwt
		}
	}
	token, err := resp.Encode(s.issuer)
	if err != nil {
		s.log.Error("auth callout: sign response", "err", err)
		return
	}
	if err := m.Respond([]byte(token)); err != nil {
		s.log.Warn("auth callout: respond", "err", err)
	}
}

// authorizeConnect checks the credentials of a client connecting from
// host: a user name and password (through the login throttle, which audits
// the attempt), a session token, or a direct upload's token.
func (s *Server) authorizeConnect(ctx context.Context, co jwt.ConnectOptions, host string) (grant, error) {
	userGrant := func(user string, expires time.Time) grant {
		return grant{user: user, account: subjects.UsersAccount, expires: expires, pub: subjects.UserPublish(user), sub: subjects.UserSubscribe(user)}
	}
	if id, secret, ok := subjects.ParseUploadToken(co.Token); ok && co.Username == "" {
		g, err := s.authorizeUpload(ctx, id, secret)
		if err != nil {
			s.log.Info("connection refused", "via", "upload token", "upload", id, "host", host, "reason", err)
		}
		return g, err
	}
	if co.Username == subjects.GatewayUser {
		return s.authorizeGateway(co, host)
	}
	switch {
	case co.Token != "":
		// No throttle: a token cannot be guessed, and a client whose
		// session ended keeps reconnecting with it.
		sess, err := s.connectingSession(ctx, co.Token)
		if err == nil {
			if _, err = s.sessionUser(ctx, sess.User); subjects.CodeOf(err) == subjects.CodeNotFound {
				err = subjects.Errorf(subjects.CodeUnauthorized, "user no longer exists")
			}
		}
		if err != nil {
			s.log.Info("connection refused", "via", "token", "host", host, "reason", err)
			return grant{}, err
		}
		return userGrant(sess.User, sess.Expires), nil
	case co.Username != "":
		u, err := s.passwordLogin(ctx, loginAttempt{via: "connect", user: co.Username, password: co.Password, host: host})
		if err != nil {
			return grant{}, err
		}
		// A password connection lives as long as a session would; the
		// client logs in over it and reconnects with the token later.
		return userGrant(u.Name, time.Now().Add(s.cfg.SessionTTL)), nil
	default:
		s.log.Info("connection refused", "host", host, "reason", "no credentials")
		return grant{}, errors.New("credentials required: user and password, or a session token")
	}
}

func (s *Server) login(req micro.Request) {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	v, err := s.doLogin(ctx, req)
	s.reply(req, v, err)
}

func (s *Server) doLogin(ctx context.Context, req micro.Request) (any, error) {
	var r subjects.LoginRequest
	if err := decode(req.Data(), &r); err != nil {
		return nil, err
	}
	if sent := subjects.UserOf(req.Subject()); r.User != sent {
		// gate has checked the reply against the subject's user, the
		// broker's word on who asks.
		return nil, subjects.Errorf(subjects.CodeUnauthorized, "log in as %q over a connection of %q: connect as the user you log in as", r.User, sent)
	}
	defer s.keepalive(req.Reply())()
	if s.store.ReadOnly() {
		// A session must be stored to be valid on every server. Said
		// before the password is looked at, so that the answer never
		// tells a right password from a wrong one.
		return nil, errReadOnly
	}
	// Per user name only: this request comes over a connection that is
	// already authorized (its reply subject is the user's own inbox), and
	// the broker tells the file servers nothing about it, not even its
	// host; a header would be the client's word. The connection itself
	// went through the auth callout's per-host count.
	u, err := s.passwordLogin(ctx, loginAttempt{via: "login", user: r.User, password: r.Password})
	if err != nil {
		return nil, err
	}
	token := uuid.NewString()
	now := time.Now().UTC()
	sess := sessionRecord{User: u.Name, Created: now, Expires: now.Add(s.cfg.SessionTTL)}
	b, _ := json.Marshal(sess)
	if _, err := s.store.KVCreate(ctx, s.sessions, sessionKey(token), b); err != nil {
		return nil, wrapStorage("store session", err)
	}
	return subjects.SessionInfo{User: u.Name, Admin: u.Admin, Token: token, Expires: sess.Expires}, nil
}

func (s *Server) logout(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err // the body is {} or nothing
	}
	if err := s.store.KVPurge(c.ctx, s.sessions, c.token); err != nil {
		return nil, wrapStorage("revoke session", err)
	}
	s.audit("logout", "user", c.user)
	return nil, nil
}

func (s *Server) whoami(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err // the body is {} or nothing
	}
	v, err := s.readKV(c.ctx, s.sessions, s.sessionsMirror, c.token)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, subjects.Errorf(subjects.CodeUnauthorized, "session expired or revoked: log in again")
	}
	if err != nil {
		return nil, wrapStorage("read session", err)
	}
	var sess sessionRecord
	_ = json.Unmarshal(v, &sess)
	return subjects.SessionInfo{User: c.user, Admin: c.admin, Expires: sess.Expires}, nil
}

func (s *Server) userAdd(c *call) (any, error) {
	r, err := decodeCall[subjects.UserRequest](c)
	if err != nil {
		return nil, err
	}
	if err := subjects.ValidUser(r.User); err != nil {
		return nil, err
	}
	if err := subjects.ValidPassword(r.Password); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcryptCost)
	if err != nil {
		return nil, err
	}
	u := userRecord{Name: r.User, Hash: hash, Admin: r.Admin, Created: time.Now().UTC()}
	if err := s.stillClaimed(c); err != nil {
		return nil, err
	}
	if err := s.putUser(c.ctx, u, true); err != nil {
		return nil, err
	}
	s.audit("user added", "user", r.User, "admin", r.Admin, "by", c.user)
	return subjects.UserInfo{Name: u.Name, Admin: u.Admin, Created: u.Created}, nil
}

func (s *Server) userRemove(c *call) (any, error) {
	r, err := decodeCall[subjects.UserRequest](c)
	if err != nil {
		return nil, err
	}
	if r.User == c.user {
		return nil, subjects.Errorf(subjects.CodeForbidden, "you cannot remove yourself")
	}
	if _, err := s.getUser(c.ctx, r.User); err != nil {
		return nil, err
	}
	// Out of every group first, as userdel does: a user added later under
	// the same name must not find the old one's groups (nor, on a failure
	// between the two steps, may a retry find the user gone and the
	// memberships left).
	if err := s.leaveGroups(c, r.User); err != nil {
		return nil, err
	}
	if err := s.stillClaimed(c); err != nil {
		return nil, err
	}
	if err := s.store.KVPurge(c.ctx, s.users, r.User); err != nil {
		return nil, wrapStorage("remove user", err)
	}
	n, err := s.revokeSessions(c.ctx, r.User, "")
	if err != nil {
		return nil, err
	}
	s.audit("user removed", "user", r.User, "by", c.user, "revoked", n)
	return nil, nil
}

// userRevoke ends every session of a user at once (admin only): each
// request checks its session in the bucket, on every server, so the
// user's next request fails and a token connection is refused.
func (s *Server) userRevoke(c *call) (any, error) {
	r, err := decodeCall[subjects.UserRequest](c)
	if err != nil {
		return nil, err
	}
	if r.Password != "" || r.Admin || r.Current != "" {
		return nil, subjects.Errorf(subjects.CodeInvalid, "revoke takes a user name only")
	}
	if _, err := s.getUser(c.ctx, r.User); err != nil {
		return nil, err
	}
	if err := s.stillClaimed(c); err != nil {
		return nil, err
	}
	n, err := s.revokeSessions(c.ctx, r.User, "")
	if err != nil {
		return nil, err
	}
	s.audit("sessions revoked", "user", r.User, "by", c.user, "revoked", n)
	return nil, nil
}

func (s *Server) userPassword(c *call) (any, error) {
	r, err := decodeCall[subjects.UserRequest](c)
	if err != nil {
		return nil, err
	}
	if r.User == "" {
		r.User = c.user
	}
	if r.User != c.user && !c.admin {
		return nil, subjects.Errorf(subjects.CodeForbidden, "only an admin may change another user's password")
	}
	if err := subjects.ValidPassword(r.Password); err != nil {
		return nil, err
	}
	if r.User == c.user {
		// One's own: the present password too, through the login
		// throttle, so that a session left open is not the account.
		if r.Current == "" {
			return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonMissingField, "malformed request: missing field %q: give your current password to change it", "current")
		}
		if _, err := s.passwordLogin(c.ctx, loginAttempt{via: "passwd", user: c.user, password: r.Current}); err != nil {
			if subjects.CodeOf(err) == subjects.CodeUnauthorized {
				return nil, subjects.Errorf(subjects.CodeUnauthorized, "the current password is wrong")
			}
			return nil, err
		}
	} else if r.Current != "" {
		return nil, subjects.Errorf(subjects.CodeInvalid, "an admin sets another user's password without theirs: leave out current")
	}
	u, err := s.getUser(c.ctx, r.User)
	if err != nil {
		return nil, err
	}
	u.Hash, err = bcrypt.GenerateFromPassword([]byte(r.Password), bcryptCost)
	if err != nil {
		return nil, err
	}
	if err := s.stillClaimed(c); err != nil {
		return nil, err
	}
	if err := s.putUser(c.ctx, u, false); err != nil {
		return nil, err
	}
	// A changed password ends every other session of that user.
	keep := ""
	if r.User == c.user {
		keep = c.token
	}
	n, err := s.revokeSessions(c.ctx, r.User, keep)
	if err != nil {
		return nil, err
	}
	s.audit("password changed", "user", r.User, "by", c.user, "revoked", n)
	return nil, nil
}

// revokeSessions deletes every session of user but the one keyed keep,
// and says how many it deleted.
func (s *Server) revokeSessions(ctx context.Context, user, keep string) (int, error) {
	keys, err := s.store.KVKeys(ctx, s.sessions)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapStorage("list sessions", err)
	}
	n := 0
	for _, k := range keys {
		if k == keep {
			continue
		}
		e, err := s.store.KVGet(ctx, s.sessions, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // ended meanwhile
		}
		if err != nil {
			// Skipping it would leave a session alive that the caller
			// was told is gone.
			return n, wrapStorage("read session", err)
		}
		var sess sessionRecord
		if json.Unmarshal(e.Value(), &sess) == nil && sess.User == user {
			if err := s.store.KVPurge(ctx, s.sessions, k); err != nil {
				return n, wrapStorage("revoke session", err)
			}
			n++
		}
	}
	return n, nil
}

func (s *Server) userList(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err // the body is {} or nothing
	}
	names, err := s.store.KVKeys(c.ctx, s.users)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, wrapStorage("list users", err)
	}
	reply := subjects.UserListReply{Users: []subjects.UserInfo{}}
	slices.Sort(names) // by name, as ls lists files
	for _, n := range names {
		u, err := s.getUser(c.ctx, n)
		if err != nil {
			continue
		}
		reply.Users = append(reply.Users, subjects.UserInfo{Name: u.Name, Admin: u.Admin, Created: u.Created})
	}
	return reply, nil
}
