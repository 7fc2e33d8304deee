package fileserver

// Share links (subjects/share.go): their records, ShareCreate, ShareList
// and ShareRemove for users, and the link requests the gateway sends in
// their holders' name. A link request runs the ordinary operation (get,
// download, put) as a call of the sharer, after checking, on every request,
// the link, its password, that the sharer still may read the file (write
// in the prefix) and that the request touches nothing but the link's file
// (a new file below its prefix).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftfs/ftfs/subjects"
)

// shareRecord is a link as stored in the shares bucket, keyed by linkKey
// of its token, which is stored nowhere.
type shareRecord struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Owner   string    `json:"owner"`
	Name    string    `json:"name,omitempty"`
	Prefix  string    `json:"prefix,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Hash is the bcrypt hash of the link's password, nil without one.
	Hash []byte `json:"hash,omitempty"`
}

func (r shareRecord) info() subjects.ShareInfo {
	return subjects.ShareInfo{ID: r.ID, Kind: r.Kind, Owner: r.Owner, Name: r.Name, Prefix: r.Prefix,
		Created: r.Created, Expires: r.Expires, Password: r.Hash != nil}
}

// valid says whether a record read from the bucket is whole: a record that
// is not is refused like an unknown link.
func (r shareRecord) valid() bool {
	switch r.Kind {
	case subjects.LinkDownload:
		return r.Name != "" && r.Prefix == "" && r.ID != "" && r.Owner != ""
	case subjects.LinkUpload:
		return r.Prefix != "" && r.Name == "" && r.ID != "" && r.Owner != ""
	}
	return false
}

// linkKey is the bucket key of a link's token.
func linkKey(token string) string {
	sum := sha256.Sum256([]byte("ftfs link\x00" + token))
	return hex.EncodeToString(sum[:])
}

// newLinkToken makes a link's secret and its public ID.
func newLinkToken() (token, id string, err error) {
	b := make([]byte, subjects.LinkTokenBytes+5)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("link token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:subjects.LinkTokenBytes]), hex.EncodeToString(b[subjects.LinkTokenBytes:]), nil
}

// errNoLink answers an unknown, revoked or malformed link: a guesser
// learns nothing more than that.
var errNoLink = subjects.Rejectf(subjects.CodeNotFound, subjects.ReasonLinkUnknown, "no such link: it was never made, or has been revoked")

func (s *Server) shareCreate(c *call) (any, error) {
	r, err := decodeCall[subjects.ShareCreateRequest](c)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ttl := subjects.DefaultShareTTL
	if r.ExpiresIn > 0 {
		ttl = time.Duration(r.ExpiresIn) * time.Second
	}
	rec := shareRecord{Owner: c.user, Created: now, Expires: now.Add(ttl)}
	if r.Name != "" {
		if _, err := s.liveObject(c.ctx, r.Name); err != nil {
			return nil, err
		}
		if !s.mayRead(c, r.Name) {
			return nil, subjects.Errorf(subjects.CodeForbidden, "you may not read %q, so you may not share it", r.Name)
		}
		rec.Kind, rec.Name = subjects.LinkDownload, r.Name
	} else {
		if !s.mayWrite(c, r.Prefix+"/") {
			return nil, subjects.Errorf(subjects.CodeForbidden, "you may not add files below %q, so no link may", r.Prefix)
		}
		rec.Kind, rec.Prefix = subjects.LinkUpload, r.Prefix
	}
	if r.Password != "" {
		if rec.Hash, err = bcrypt.GenerateFromPassword([]byte(r.Password), bcryptCost); err != nil {
			return nil, err
		}
	}
	token, id, err := newLinkToken()
	if err != nil {
		return nil, err
	}
	rec.ID = id
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.KVCreate(c.ctx, s.shares, linkKey(token), b); err != nil {
		return nil, wrapStorage("store link", err)
	}
	s.audit("link created", "id", id, "user", c.user, "kind", rec.Kind, "file", rec.Name, "prefix", rec.Prefix,
		"expires", rec.Expires, "protected", rec.Hash != nil)
	info := rec.info()
	info.Token = token
	return info, nil
}

// eachShare calls f with every link record and its key.
func (s *Server) eachShare(ctx context.Context, f func(key string, rec shareRecord) error) error {
	keys, err := s.store.KVKeys(ctx, s.shares)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return wrapStorage("list links", err)
	}
	for _, k := range keys {
		e, err := s.store.KVGet(ctx, s.shares, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // revoked or swept meanwhile
		}
		if err != nil {
			return wrapStorage("read link", err)
		}
		var rec shareRecord
		if json.Unmarshal(e.Value(), &rec) != nil {
			s.log.Warn("corrupt link record skipped", "key", k[:8])
			continue
		}
		if err := f(k, rec); err != nil {
			return err
		}
	}
	return nil
}

// shareList lists the caller's links that have not expired; an admin's
// lists everyone's.
func (s *Server) shareList(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err
	}
	reply := subjects.ShareListReply{Shares: []subjects.ShareInfo{}}
	now := time.Now()
	err := s.eachShare(c.ctx, func(_ string, rec shareRecord) error {
		if (rec.Owner == c.user || c.admin) && now.Before(rec.Expires) {
			reply.Shares = append(reply.Shares, rec.info())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(reply.Shares, func(a, b subjects.ShareInfo) int { return a.Created.Compare(b.Created) })
	return reply, nil
}

// shareRemove revokes a link of the caller's (any, for an admin). Another
// user's link is "no such link", so that IDs tell nobody what others share.
func (s *Server) shareRemove(c *call) (any, error) {
	r, err := decodeCall[subjects.ShareRemoveRequest](c)
	if err != nil {
		return nil, err
	}
	var key string
	var found shareRecord
	err = s.eachShare(c.ctx, func(k string, rec shareRecord) error {
		if rec.ID == r.ID && (rec.Owner == c.user || c.admin) {
			key, found = k, rec
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, subjects.Errorf(subjects.CodeNotFound, "no link %q of yours", r.ID)
	}
	if err := s.store.KVPurge(c.ctx, s.shares, key); err != nil {
		return nil, wrapStorage("revoke link", err)
	}
	s.audit("link revoked", "id", found.ID, "owner", found.Owner, "by", c.user)
	return nil, nil
}

// sweepShares purges expired links from the bucket (they are refused from
// the moment they expire; this only keeps the bucket small) and drops them
// from the mirror, on the janitor's schedule.
func (s *Server) sweepShares() {
	s.every(s.janitorEvery(), func() {
		s.sharesMirror.dropExpired(func(v []byte) bool {
			var rec shareRecord
			return json.Unmarshal(v, &rec) != nil || time.Now().After(rec.Expires)
		})
		if s.store.ReadOnly() {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		now := time.Now()
		err := s.eachShare(ctx, func(k string, rec shareRecord) error {
			if now.After(rec.Expires) {
				if err := s.store.KVPurge(ctx, s.shares, k); err != nil {
					return err
				}
				s.log.Info("expired link swept", "id", rec.ID, "owner", rec.Owner)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("link sweep failed", "err", err)
		}
	})
}

// linkTarget says which file a link request touches, from its body; it
// refuses a request a link may never make (an overwrite).
type linkTarget func(c *call) (string, error)

// linked runs f for a link request of kind (any, when ""): the request
// must come from the gateway with a link of that kind, and touch only what target names
// within the link (target nil: the link itself, LinkInfo).
func (s *Server) linked(kind string, target linkTarget, f func(c *call, rec shareRecord) (any, error)) func(micro.Request) {
	return func(req micro.Request) {
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		defer cancel()
		// gate has checked that the reply goes to the inbox of the user
		// the subject names.
		stopKeepalive := s.keepalive(req.Reply())
		defer stopKeepalive()
		c, rec, err := s.linkCall(ctx, req, kind)
		if err == nil && target != nil {
			var name string
			if name, err = target(c); err == nil {
				err = linkCovers(rec, name)
			}
			if err == nil && rec.Kind == subjects.LinkUpload && !s.mayWrite(c, name) {
				err = subjects.Rejectf(subjects.CodeForbidden, subjects.ReasonLinkScope, "the link's sharer may not add %q", name)
			}
		}
		if err != nil {
			s.reply(req, nil, err)
			return
		}
		v, err := f(c, rec)
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

// asOp adapts an ordinary operation to linked.
func asOp(f op) func(*call, shareRecord) (any, error) {
	return func(c *call, _ shareRecord) (any, error) { return f(c) }
}

// linkCovers says whether a request on name stays within the link.
func linkCovers(rec shareRecord, name string) error {
	switch {
	case rec.Kind == subjects.LinkDownload && name == rec.Name:
		return nil
	case rec.Kind == subjects.LinkUpload && strings.HasPrefix(name, rec.Prefix+"/") && subjects.ValidName(name) == nil:
		return nil
	}
	return subjects.Rejectf(subjects.CodeForbidden, subjects.ReasonLinkScope, "%q is outside what this link opens", name)
}

// linkCall checks a link request and makes the call it runs as: the
// sharer's, never with an admin's rights.
func (s *Server) linkCall(ctx context.Context, req micro.Request, kind string) (*call, shareRecord, error) {
	var rec shareRecord
	if subjects.UserOf(req.Subject()) != subjects.GatewayUser {
		return nil, rec, subjects.Errorf(subjects.CodeForbidden, "links are used through the gateway, not by users")
	}
	token := req.Headers().Get(subjects.HeaderLink)
	if !subjects.ValidLinkToken(token) {
		return nil, rec, errNoLink
	}
	v, err := s.readKV(ctx, s.shares, s.sharesMirror, linkKey(token))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, rec, errNoLink
	}
	if err != nil {
		return nil, rec, wrapStorage("read link", err)
	}
	if json.Unmarshal(v, &rec) != nil || !rec.valid() {
		s.log.Error("corrupt link record refused", "key", linkKey(token)[:8])
		return nil, rec, errNoLink
	}
	if time.Now().After(rec.Expires) {
		return nil, rec, subjects.Rejectf(subjects.CodeNotFound, subjects.ReasonLinkExpired, "this link expired on %s", rec.Expires.UTC().Format(time.RFC3339))
	}
	if err := s.checkLinkPassword(ctx, rec, req.Headers().Get(subjects.HeaderLinkPassword)); err != nil {
		return nil, rec, err
	}
	// The link dies with its sharer.
	u, err := s.sessionUser(ctx, rec.Owner)
	if subjects.CodeOf(err) == subjects.CodeNotFound {
		return nil, rec, errNoLink
	}
	if err != nil {
		return nil, rec, err
	}
	if kind != "" && rec.Kind != kind {
		if rec.Kind == subjects.LinkUpload {
			return nil, rec, subjects.Rejectf(subjects.CodeForbidden, subjects.ReasonLinkKind, "this link only takes uploads")
		}
		return nil, rec, subjects.Rejectf(subjects.CodeForbidden, subjects.ReasonLinkKind, "this link only downloads its file")
	}
	c := &call{ctx: ctx, req: req, user: u.Name}
	switch {
	case rec.Kind == subjects.LinkDownload && !s.mayRead(c, rec.Name),
		rec.Kind == subjects.LinkUpload && !s.mayWrite(c, rec.Prefix+"/"):
		// The sharer's rights have changed since: the link no longer
		// opens anything.
		return nil, rec, errNoLink
	}
	return c, rec, nil
}

// checkLinkPassword checks the password of a link that has one, through a
// throttle per link in the logins bucket (the login throttle's policy):
// after a few wrong passwords each try waits, doubling, and a run of them
// locks the link for a while.
func (s *Server) checkLinkPassword(ctx context.Context, rec shareRecord, password string) error {
	if rec.Hash == nil {
		return nil
	}
	if password == "" {
		return subjects.Rejectf(subjects.CodeUnauthorized, subjects.ReasonLinkPassword, "this link needs a password")
	}
	th := s.throttle
	now := th.now()
	key := failureKey("link\x00" + rec.ID)
	f, sharedErr := s.loadFailures(ctx, key)
	if sharedErr == nil {
		th.users.set(key, f, now)
	} else {
		f = th.users.get(key)
	}
	if wait := th.user.wait(f, now); wait > 0 {
		s.audit("link password throttled", "id", rec.ID, "retry_in", wait.Round(time.Millisecond))
		secs := max(wait.Round(time.Second), time.Second)
		return subjects.Errorf(subjects.CodeThrottled, "too many wrong passwords for this link: try again in %s", secs)
	}
	// After the throttle: a locked link refuses even a password it knows,
	// or guesses would go on, unchecked by bcrypt, while it is locked.
	if s.linkPasswords.passed(rec, password, now) {
		return nil
	}
	if bcrypt.CompareHashAndPassword(rec.Hash, []byte(password)) != nil {
		n := s.loginFailed(ctx, key, "")
		s.audit("link password wrong", "id", rec.ID, "failures", n.Count)
		return subjects.Rejectf(subjects.CodeUnauthorized, subjects.ReasonLinkPassword, "wrong password for this link")
	}
	if sharedErr == nil && th.user.current(f, now).Count > 0 {
		if err := s.clearFailures(ctx, key); err != nil {
			s.log.Warn("link throttle: could not clear failures", "id", rec.ID, "err", err)
		}
	}
	th.users.reset(key)
	s.linkPasswords.remember(rec, password, now)
	return nil
}

// linkInfo answers what a link is; it is how the gateway starts every use
// of a link, so it is where a use is audited.
func (s *Server) linkInfo(c *call, rec shareRecord) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err
	}
	reply := subjects.LinkInfoReply{Kind: rec.Kind, Prefix: rec.Prefix, Expires: rec.Expires}
	if rec.Kind == subjects.LinkDownload {
		var fi subjects.FileInfo
		switch {
		case !s.store.ReadOnly():
			o, err := s.liveObject(c.ctx, rec.Name)
			if err != nil {
				return nil, err
			}
			fi = fileInfo(o.info)
		case s.cfg.Fallback != nil:
			// Storage has lost its quorum: the backup's replica answers,
			// as for ReplicaStat.
			f, rfi, err := s.cfg.Fallback.Open(rec.Name)
			if err != nil {
				return nil, err
			}
			f.Close()
			fi = rfi
			fi.Replica = s.replicaLag()
		default:
			return nil, errReadOnly
		}
		reply.File = &fi
	}
	s.audit("link used", "id", rec.ID, "owner", rec.Owner, "kind", rec.Kind, "file", rec.Name, "prefix", rec.Prefix)
	return reply, nil
}

// Targets of the link requests.

func nameTarget(c *call) (string, error) {
	r, err := decodeCall[subjects.NameRequest](c)
	return r.Name, err
}

func downloadTarget(c *call) (string, error) {
	r, err := decodeCall[subjects.DownloadRequest](c)
	return r.Name, err
}

// authorizeGateway checks a connection of the share link gateway: its
// secret must be the one the file servers were given. It may send link
// requests under its own name and read its own inbox, nothing else.
func (s *Server) authorizeGateway(co jwt.ConnectOptions, host string) (grant, error) {
	now := s.throttle.now()
	if host != "" {
		// The secret is long and random, but a host that keeps guessing
		// waits as after failed logins.
		if wait := s.throttle.hosts.wait(host, now); wait > 0 {
			s.audit("gateway throttled", "host", host, "retry_in", wait.Round(time.Millisecond))
			return grant{}, errThrottled(wait)
		}
	}
	want := sha256.Sum256([]byte(s.cfg.GatewayPassword))
	got := sha256.Sum256([]byte(co.Password))
	if s.cfg.GatewayPassword == "" || co.Token != "" || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		if host != "" {
			s.throttle.hosts.failed(host, now)
		}
		s.audit("gateway refused", "host", host, "configured", s.cfg.GatewayPassword != "")
		return grant{}, errors.New("gateway credentials refused")
	}
	s.log.Info("gateway connected", "host", host)
	return grant{user: subjects.GatewayUser, account: subjects.UsersAccount, expires: time.Now().Add(s.cfg.SessionTTL),
		pub: subjects.GatewayPublish(), sub: subjects.GatewaySubscribe()}, nil
}

// errLinkOverwrite refuses an upload-only link's request to replace a file.
var errLinkOverwrite = subjects.Rejectf(subjects.CodeForbidden, subjects.ReasonLinkScope, "an upload-only link adds new files; it never replaces one")

func putTarget(c *call) (string, error) {
	var r subjects.PutRequest
	if err := decode([]byte(c.req.Headers().Get(subjects.HeaderPut)), &r); err != nil {
		return "", err
	}
	if r.Overwrite {
		return "", errLinkOverwrite
	}
	return r.Name, nil
}

func openTarget(c *call) (string, error) {
	r, err := decodeCall[subjects.UploadOpenRequest](c)
	if err != nil {
		return "", err
	}
	if r.Overwrite {
		return "", errLinkOverwrite
	}
	if !r.Direct {
		// The chunk subjects of relayed uploads are not the gateway's.
		return "", subjects.Errorf(subjects.CodeInvalid, "an upload through a link is direct: give its size")
	}
	return r.Name, nil
}

// uploadTarget is the name of the upload a resume, abort (or, commit, a
// commit) names: an upload opened through a link, so that a link never
// reaches an upload its sharer opened himself.
func (s *Server) uploadTarget(commit bool) linkTarget {
	return func(c *call) (string, error) {
		var id string
		if commit {
			r, err := decodeCall[subjects.UploadCommitRequest](c)
			if err != nil {
				return "", err
			}
			id = r.Upload
		} else {
			r, err := decodeCall[subjects.UploadRequest](c)
			if err != nil {
				return "", err
			}
			id = r.Upload
		}
		rec, _, err := s.readUpload(c.ctx, id)
		if err != nil {
			return "", err
		}
		if rec.Via != subjects.GatewayUser || rec.Owner != c.user {
			return "", subjects.Errorf(subjects.CodeNotFound, "no upload %q of this link", id)
		}
		return rec.Name, nil
	}
}

// linkStored audits a file stored through an upload-only link.
func (s *Server) linkStored(f op) func(*call, shareRecord) (any, error) {
	return func(c *call, rec shareRecord) (any, error) {
		v, err := f(c)
		if fi, ok := v.(subjects.FileInfo); ok && err == nil {
			s.audit("file added through link", "id", rec.ID, "owner", rec.Owner, "file", fi.Name, "size", fi.Size)
		}
		return v, err
	}
}
