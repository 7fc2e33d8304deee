// Package client is the Go client of ftfs. It finds a live file server by
// itself (any broker URL will do; requests go to whichever file server
// answers), retries requests a dead or frozen server swallowed, and moves
// files in chunks that survive the loss of the server handling them.
//
//	c, err := client.Dial(ctx, []string{"nats://127.0.0.1:4222"},
//		client.Credentials{User: "alice", Password: pw})
//	if err != nil { ... }
//	defer c.Close()
//	sess, err := c.Login(ctx)            // sess.Token can be saved and reused
//	f, _ := os.Open("report.pdf")
//	info, err := c.Put(ctx, "report.pdf", f, -1)
//	files, err := c.List(ctx, "")
//	err = c.ListPages(ctx, "", func(p client.Listing) error { ... }) // a page at a time
//	err = c.Get(ctx, "report.pdf", w)    // verified against its SHA-256
//	if errors.Is(err, client.ErrNotFound) { ... }
package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// Session, FileInfo, UserInfo and ReplicaLag are the wire types. A
// FileInfo served from a backup's replica (storage has lost its quorum)
// has Replica set; see ReplicaLag.
type (
	Session    = subjects.SessionInfo
	FileInfo   = subjects.FileInfo
	UserInfo   = subjects.UserInfo
	ReplicaLag = subjects.ReplicaLag
)

// Credentials identify the user: a password (to log in) or the token of a
// saved session.
type Credentials struct {
	User     string
	Password string
	Token    string
}

type options struct {
	timeout time.Duration
	log     *slog.Logger
	name    string
	tls     bool
	tlsCA   string
	// relayUploads sends every upload's chunks through a server.
	relayUploads bool
}

// Option configures a Client.
type Option func(*options)

// WithRequestTimeout sets how long a request may go without a sign of life
// (an answer or a keepalive) from the server working on it before the
// client sends it again, to whichever server is alive (default 1s; the
// servers send a keepalive every subjects.KeepaliveInterval).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithLogger sets the logger for connection events and failovers.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithName sets the NATS connection name.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithTLS makes the client connect with TLS only, trusting the CA
// certificates in caFile, or the system's roots when caFile is "". Without
// it the client still uses TLS, with the system's roots, for tls:// URLs
// and for brokers that require it.
func WithTLS(caFile string) Option {
	return func(o *options) { o.tls, o.tlsCA = true, caFile }
}

// WithRelayedUploads makes uploads send their chunks through the file
// server holding them, as uploads of unknown size always do, instead of
// publishing them into storage over a connection of their own. The server
// then hashes every byte and checks every chunk against the limits; a put
// takes about twice the CPU.
func WithRelayedUploads() Option { return func(o *options) { o.relayUploads = true } }

// defaultBudget bounds the retries of a request whose context has no
// deadline, so that a call never hangs when no file server is running.
const defaultBudget = 30 * time.Second

// Client is a connection to ftfs as one user. It is safe for concurrent use.
type Client struct {
	nc      *nats.Conn
	replies *replies
	user    string
	cred    Credentials
	opts    options
	servers []string

	mu    sync.Mutex
	token string
	// link, when set, makes every request a share link's (ForLink).
	link *linkCredentials
}

// Dial connects to the brokers as the user of cred. The broker asks a file
// server to check the credentials, so a refused connection means a wrong
// password, an expired session, or no file server running. It also means a
// login throttled after repeated failures: the broker tells a refused
// client only "authorization violation", never the file server's reason,
// so Dial cannot return ErrThrottled (Login can).
func Dial(ctx context.Context, servers []string, cred Credentials, opts ...Option) (*Client, error) {
	o := options{timeout: time.Second, log: slog.New(slog.DiscardHandler), name: "ftfs-client"}
	for _, opt := range opts {
		opt(&o)
	}
	if err := subjects.ValidUser(cred.User); err != nil {
		return nil, fmt.Errorf("dial: %w", fromWire(err))
	}
	if len(servers) == 0 {
		servers = []string{nats.DefaultURL}
	}
	nopts := connOptions(ctx, o, o.name, cred.User)
	if cred.Token != "" {
		nopts = append(nopts, nats.Token(cred.Token))
	} else {
		nopts = append(nopts, nats.UserInfo(cred.User, cred.Password))
	}
	nc, err := connect(ctx, servers, cred.User, nopts, o.log)
	if err != nil {
		return nil, err
	}
	rs, err := newReplies(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{nc: nc, replies: rs, user: cred.User, cred: cred, opts: o, token: cred.Token, servers: servers}, nil
}

// dialBudget bounds Dial's attempts when the caller set no deadline: long
// enough for a broker's death (the file servers connected through it
// reconnect) and for two of the broker's waits on a file server (the first
// may go to a frozen one), short enough to tell soon that none runs.
const dialBudget = 10 * time.Second

// connect connects to one of servers, trying again until ctx's deadline
// (or dialBudget) while no broker accepts the connection, or one refuses
// it without a file server's verdict: right after a broker's death the
// servers it was given may be the dead one and one whose file servers are
// still reconnecting. Only a verdict on the credentials ends it early.
func connect(ctx context.Context, servers []string, user string, nopts []nats.Option, log *slog.Logger) (*nats.Conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(dialBudget)
	}
	urls := strings.Join(servers, ",")
	backoff := 100 * time.Millisecond
	undecided := false // a refusal came without a file server's verdict
	// One server an attempt, each in turn from a random one, so that an
	// attempt's error is that server's (nats.go tries its whole list and
	// returns the last error only) and every server gets its turn.
	next := rand.IntN(len(servers))
	for attempt := 0; ; attempt++ {
		url := servers[(next+attempt)%len(servers)]
		left := time.Until(deadline)
		start := time.Now()
		nc, err := nats.Connect(url, append(nopts, nats.Timeout(min(connectTimeout, max(left, 100*time.Millisecond))))...)
		if err == nil {
			log.Debug("connected", "broker", url, "took", time.Since(start))
			return nc, nil
		}
		log.Debug("connection attempt failed", "broker", url, "took", time.Since(start), "err", err)
		if refused(err) {
			// A file server answers within the broker's wait; a refusal
			// that took the whole wait is the broker's own, when no file
			// server answered (none running, or storage failing).
			if time.Since(start) < subjects.AuthCalloutTimeout-500*time.Millisecond {
				// The broker gives no reason: a throttled login (see
				// ErrThrottled) is refused the same way.
				return nil, fmt.Errorf("connect as %s: %w: wrong user name or password, too many failed logins (wait, then try again), or session expired", user, ErrUnauthorized)
			}
			undecided = true
		}
		if strings.Contains(err.Error(), "expected 'PONG', got 'PING'") {
			// The broker's first ping (at its ping interval, 2 s)
			// came before its answer to CONNECT: the auth callout was
			// still waiting for a file server.
			undecided = true
		}
		if (attempt+1)%len(servers) != 0 && time.Until(deadline) > 0 && ctx.Err() == nil {
			continue // the next server at once
		}
		if time.Until(deadline) < backoff || ctx.Err() != nil {
			if undecided {
				return nil, fmt.Errorf("connect to %s: %w: %w to the broker's check of the credentials: none is running, or none can read storage", urls, ErrUnavailable, ErrNoFileServer)
			}
			return nil, fmt.Errorf("connect to %s: %w: %v", urls, ErrUnavailable, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// refused says that a broker refused a connection's credentials.
func refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization")
}

// connOptions are the options of every connection of a client of user
// (the requests' own, and a direct upload's), but its credentials.
func connOptions(ctx context.Context, o options, name, user string) []nats.Option {
	nopts := []nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(subjects.Inbox(user)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 500*time.Millisecond),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		// A broker may refuse a reconnect while no file server can answer
		// its auth callout (both restarting): keep trying, as after any
		// other failure, instead of closing for good.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.log.Warn("disconnected from broker", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			o.log.Info("reconnected", "broker", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			o.log.Warn("nats error", "err", err)
		}),
	}
	switch {
	case o.tlsCA != "":
		nopts = append(nopts, nats.RootCAs(o.tlsCA))
	case o.tls:
		// Verified against the system's roots: a nil RootCAs.
		nopts = append(nopts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if d, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(time.Until(d)))
	} else {
		nopts = append(nopts, nats.Timeout(connectTimeout))
	}
	return nopts
}

// connectTimeout bounds one connection attempt. A broker answers CONNECT
// only once a file server has answered its auth callout, or after
// subjects.AuthCalloutTimeout without an answer; either must be let
// arrive. With nats.go's 2 s a fresh command right after a broker was
// killed failed with "i/o timeout" (issue 15, item 2).
const connectTimeout = subjects.AuthCalloutTimeout + time.Second

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// Brokers returns the URL of every broker the connection knows: those it
// was given and those the cluster has announced since. A caller that keeps
// them (the CLI's saved session does) reaches the cluster later through
// any broker, not only the one it was first given.
func (c *Client) Brokers() []string { return c.nc.Servers() }

// User is the user this client acts as.
func (c *Client) User() string { return c.user }

// Token is the current session token ("" before Login).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Conn is the underlying NATS connection, for tools that inspect it.
func (c *Client) Conn() *nats.Conn { return c.nc }

// call is one request with its retry policy.
type call struct {
	subject string
	body    any
	// raw, when set, is sent as the body instead of body's JSON, and
	// header as more headers (subjects.Put).
	raw    []byte
	header nats.Header
	// take, when set, takes the reply instead of reply (subjects.Get).
	take     func(*nats.Msg) error
	reply    any
	mutating bool // sends a request ID, the same on every retry
	noToken  bool
	// replica is where a read goes when a server answers CodeReadOnly:
	// storage has lost its quorum and a backup serves from its replica.
	replica string
	// otherwise is where the request goes when nobody answers on subject
	// (an instance's own subject, its server gone): any server.
	otherwise string
}

// do sends a request, retrying on silence, a missing responder or a
// retryable error code, until ctx (or the default budget) runs out. A
// working server sends keepalives (subjects.KeepaliveInterval); one that
// falls silent for the request timeout, killed or frozen, has the request
// sent again at once, to whichever server is alive. Every attempt uses the
// same reply subject (and request ID), so the answer of a slow first
// attempt is as good as a later one's.
func (c *Client) do(ctx context.Context, r call) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultBudget)
		defer cancel()
	}
	body := r.raw
	if body == nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return err
		}
	}
	id := ""
	if r.mutating {
		id = uuid.NewString()
	}
	reply, msgs, done := c.replies.open()
	defer done()
	silence := time.NewTimer(c.opts.timeout)
	defer silence.Stop()
	backoff := 50 * time.Millisecond
	var last error
	for {
		m := nats.NewMsg("")
		m.Reply, m.Data = reply, body
		for k, v := range r.header {
			m.Header[k] = v
		}
		c.address(m, r.subject, !r.noToken)
		if id != "" {
			m.Header.Set(subjects.HeaderRequestID, id)
		}
		perr := c.nc.PublishMsg(m)
		if perr != nil && !retryable(perr) {
			return fmt.Errorf("%w: %v", ErrUnavailable, perr)
		}
		silence.Reset(c.opts.timeout)
		resp, err := c.await(ctx, msgs, silence, c.replies.serverGone())
		for errors.Is(err, errSilent) && perr == nil && !c.nc.IsConnected() {
			// Sent while the connection was down, the request waits in
			// its buffer and goes out on reconnect; sent again as well,
			// it would reach the servers twice, and two resumes of one
			// upload undo each other's fences. Once reconnected, a
			// server working on it sends keepalives again.
			if werr := waitConnected(ctx, c.nc); werr != nil {
				return gaveUp(last, werr)
			}
			silence.Reset(c.opts.timeout)
			resp, err = c.await(ctx, msgs, silence, c.replies.serverGone())
		}
		switch {
		case errors.Is(err, errSilent):
			c.opts.log.Debug("file server silent; sending the request again", "subject", r.subject)
			last = err
			r.subject = cmp.Or(r.otherwise, r.subject)
			continue // the server is gone: no reason to wait
		case err != nil:
			return gaveUp(last, err)
		case resp.Header.Get(subjects.HeaderStatus) == "503":
			last = nats.ErrNoResponders
			if r.otherwise != "" && r.subject != r.otherwise {
				r.subject = r.otherwise
				continue
			}
		case errorIn(resp.Header) != nil:
			e := errorIn(resp.Header)
			if e.Code == subjects.CodeReadOnly && r.replica != "" && r.subject != r.replica {
				c.opts.log.Debug("storage is read-only; reading from a replica", "subject", r.subject)
				r.subject = r.replica
				continue
			}
			if !e.Code.Retryable() {
				return e
			}
			last = e
		case r.take != nil:
			return r.take(resp)
		default:
			if r.reply != nil {
				if err := json.Unmarshal(resp.Data, r.reply); err != nil {
					return fmt.Errorf("%w: undecodable reply: %v", ErrInternal, err)
				}
			}
			return nil
		}
		c.opts.log.Debug("request failed; retrying", "subject", r.subject, "err", last)
		select {
		case <-ctx.Done():
			return gaveUp(last, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// waitConnected waits until nc is connected, or ctx ends.
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return nats.ErrConnectionClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// gaveUp is the error of a request whose time ran out: the last answer a
// server gave, when it said unavailable or busy, else ErrUnavailable with
// the last reason (or why the time ran out).
func gaveUp(last, cause error) error {
	if errors.Is(last, ErrUnavailable) || errors.Is(last, ErrBusy) {
		return last
	}
	return fmt.Errorf("%w: no file server answered (%v)", ErrUnavailable, cmp.Or(last, cause))
}

// errSilent: no reply and no keepalive for the request timeout, or a file
// server has gone (subjects.ServerGone), maybe the one with the request.
var errSilent = errors.New("file server silent")

// await waits for the answer to a request, skipping keepalives, until the
// server falls silent or another goes (errSilent), or ctx ends.
func (c *Client) await(ctx context.Context, msgs <-chan *nats.Msg, silence *time.Timer, gone <-chan struct{}) (*nats.Msg, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-silence.C:
			return nil, errSilent
		case <-gone:
			return nil, errSilent
		case m := <-msgs:
			if m.Header.Get(subjects.HeaderStatus) == "100" {
				silence.Reset(c.opts.timeout)
				continue
			}
			return m, nil
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}

// Login creates a session with the password given to Dial. The client uses
// it from then on; its token may be saved and given to Dial later.
func (c *Client) Login(ctx context.Context) (Session, error) {
	var s Session
	if c.cred.Password == "" {
		return s, fmt.Errorf("login: %w: no password", ErrUnauthorized)
	}
	err := c.do(ctx, call{subject: subjects.Login, body: subjects.LoginRequest{User: c.user, Password: c.cred.Password}, reply: &s, noToken: true})
	if err != nil {
		return s, fmt.Errorf("login: %w", err)
	}
	c.mu.Lock()
	c.token = s.Token
	c.mu.Unlock()
	return s, nil
}

// Logout revokes the session on every server.
func (c *Client) Logout(ctx context.Context) error {
	if err := c.do(ctx, call{subject: subjects.Logout, body: subjects.Empty{}, mutating: true}); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
	return nil
}

// WhoAmI describes the current session.
func (c *Client) WhoAmI(ctx context.Context) (Session, error) {
	var s Session
	err := c.do(ctx, call{subject: subjects.WhoAmI, body: subjects.Empty{}, reply: &s})
	if err != nil {
		return s, fmt.Errorf("whoami: %w", err)
	}
	return s, nil
}

// List returns every file whose name starts with prefix, sorted by name.
// Files listed by a backup from its replica (storage has lost its quorum)
// have Replica set, and those it has seen stored but not yet copied have
// Pending set; ListFiles also says so of an empty listing. It holds the
// whole listing in memory: ListPages takes one page at a time.
func (c *Client) List(ctx context.Context, prefix string) ([]FileInfo, error) {
	l, err := c.ListFiles(ctx, prefix)
	return l.Files, err
}

// Listing is the answer to ListFiles, and one page of ListPages.
type Listing struct {
	Files []FileInfo
	// Replica is set when a backup listed from its replica dir, because
	// storage has lost its quorum: how far behind storage it is.
	Replica *ReplicaLag
}

// ListFiles lists as List does, and says whether (and how far behind) a
// replica answered instead of storage.
func (c *Client) ListFiles(ctx context.Context, prefix string) (Listing, error) {
	var l Listing
	err := c.ListPages(ctx, prefix, func(page Listing) error {
		l.Files = append(l.Files, page.Files...)
		if page.Replica != nil {
			l.Replica = page.Replica
		}
		return nil
	})
	if err != nil {
		return Listing{}, err
	}
	return l, nil
}

// ListPages lists as ListFiles does, a page at a time, so that a listing
// of any length takes the memory of one page: it asks for the files whose
// names start with prefix up to subjects.MaxListPage at a time, and calls
// page with each page as it arrives, in name order. page is called at
// least once: an empty listing is one empty page. A page that a backup
// listed from its replica has Replica set, as has each of its files. The
// page's Files are its own; page may keep them. An error that page returns
// ends the listing, and ListPages returns it as it is.
func (c *Client) ListPages(ctx context.Context, prefix string, page func(Listing) error) error {
	after := ""
	for {
		var p subjects.ListReply
		err := c.do(ctx, call{subject: subjects.List, replica: subjects.ReplicaList, body: subjects.ListRequest{Prefix: prefix, After: after, Limit: subjects.MaxListPage}, reply: &p})
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if p.Replica != nil {
			for i := range p.Files {
				p.Files[i].Replica = p.Replica
			}
		}
		last := len(p.Files) == 0 || !p.More
		if !last {
			// Taken before page, which may do as it likes with the files.
			after = p.Files[len(p.Files)-1].Name
		}
		if err := page(Listing{Files: p.Files, Replica: p.Replica}); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// Stat describes one file.
func (c *Client) Stat(ctx context.Context, name string) (FileInfo, error) {
	var fi FileInfo
	if err := subjects.ValidName(name); err != nil {
		return fi, fmt.Errorf("stat: %w", fromWire(err))
	}
	if err := c.do(ctx, call{subject: subjects.Stat, replica: subjects.ReplicaStat, body: subjects.NameRequest{Name: name}, reply: &fi}); err != nil {
		return fi, fmt.Errorf("stat %q: %w", name, err)
	}
	return fi, nil
}

// Delete removes a file: the caller's own where the folder's access rule
// gives them write, anyone's where it gives them delete (SetAccess).
func (c *Client) Delete(ctx context.Context, name string) error {
	if err := subjects.ValidName(name); err != nil {
		return fmt.Errorf("delete: %w", fromWire(err))
	}
	if err := c.do(ctx, call{subject: subjects.Delete, body: subjects.NameRequest{Name: name}, mutating: true}); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	return nil
}

// Rename renames a file: Delete's check on the old name, a put's on the
// new one (SetAccess). Without overwrite an existing target is
// ErrConflict.
func (c *Client) Rename(ctx context.Context, from, to string, overwrite bool) (FileInfo, error) {
	var fi FileInfo
	for _, n := range []string{from, to} {
		if err := subjects.ValidName(n); err != nil {
			return fi, fmt.Errorf("rename: %w", fromWire(err))
		}
	}
	err := c.do(ctx, call{subject: subjects.Rename, body: subjects.RenameRequest{From: from, To: to, Overwrite: overwrite}, reply: &fi, mutating: true})
	if err != nil {
		return fi, fmt.Errorf("rename %q to %q: %w", from, to, err)
	}
	return fi, nil
}

// AddUser creates a user (admin only).
func (c *Client) AddUser(ctx context.Context, user, password string, admin bool) error {
	if err := c.do(ctx, call{subject: subjects.UserAdd, body: subjects.UserRequest{User: user, Password: password, Admin: admin}, mutating: true}); err != nil {
		return fmt.Errorf("add user %q: %w", user, err)
	}
	return nil
}

// RemoveUser deletes a user and ends their sessions (admin only).
func (c *Client) RemoveUser(ctx context.Context, user string) error {
	if err := c.do(ctx, call{subject: subjects.UserRemove, body: subjects.UserRequest{User: user}, mutating: true}); err != nil {
		return fmt.Errorf("remove user %q: %w", user, err)
	}
	return nil
}

// RevokeSessions ends every session of a user at once, on every server
// (admin only): the user's next request fails with ErrUnauthorized, and a
// connection with one of its tokens is refused.
func (c *Client) RevokeSessions(ctx context.Context, user string) error {
	if err := c.do(ctx, call{subject: subjects.UserRevoke, body: subjects.UserRequest{User: user}, mutating: true}); err != nil {
		return fmt.Errorf("revoke sessions of %q: %w", user, err)
	}
	return nil
}

// SetPassword sets another user's password (admin only). The user's
// sessions end.
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	if err := c.do(ctx, call{subject: subjects.UserPassword, body: subjects.UserRequest{User: user, Password: password}, mutating: true}); err != nil {
		return fmt.Errorf("set password of %q: %w", user, err)
	}
	return nil
}

// ChangePassword changes one's own password, given the current one
// (ErrUnauthorized when it is wrong). Every other session of the user
// ends; this one goes on.
func (c *Client) ChangePassword(ctx context.Context, current, password string) error {
	if err := c.do(ctx, call{subject: subjects.UserPassword, body: subjects.UserRequest{User: c.user, Password: password, Current: current}, mutating: true}); err != nil {
		return fmt.Errorf("change password of %q: %w", c.user, err)
	}
	return nil
}

// ListUsers lists every user (admin only).
func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var r subjects.UserListReply
	if err := c.do(ctx, call{subject: subjects.UserList, body: subjects.Empty{}, reply: &r}); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return r.Users, nil
}
