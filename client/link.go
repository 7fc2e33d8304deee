package client

// Share links: the users' requests that make, list and revoke them, and
// the gateway's side, a client that connects as subjects.GatewayUser and
// sends a link's credentials instead of a session (ForLink). A link's
// client is an ordinary Client otherwise: Get, Stat and Put fail over,
// retry and resume as they do for a user.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// ShareInfo and LinkInfo are the wire types of share links.
type (
	ShareInfo = subjects.ShareInfo
	LinkInfo  = subjects.LinkInfoReply
)

// ShareOptions shape a new link.
type ShareOptions struct {
	// Expires is the link's life (0: subjects.DefaultShareTTL), whole
	// seconds, at most subjects.MaxShareTTL.
	Expires time.Duration
	// Password, when set, must be given with every use of the link.
	Password string
}

// Share makes a link to the file name; the answer's Token is the link's
// secret, which nobody can ask for again.
func (c *Client) Share(ctx context.Context, name string, o ShareOptions) (ShareInfo, error) {
	if err := subjects.ValidName(name); err != nil {
		return ShareInfo{}, fmt.Errorf("share: %w", fromWire(err))
	}
	return c.share(ctx, subjects.ShareCreateRequest{Name: name}, o)
}

// ShareUploads makes an upload-only link to the folder prefix: its holder
// may add new files below it and do nothing else.
func (c *Client) ShareUploads(ctx context.Context, prefix string, o ShareOptions) (ShareInfo, error) {
	if err := subjects.ValidName(prefix); err != nil {
		return ShareInfo{}, fmt.Errorf("share: %w", fromWire(err))
	}
	return c.share(ctx, subjects.ShareCreateRequest{Prefix: prefix}, o)
}

func (c *Client) share(ctx context.Context, r subjects.ShareCreateRequest, o ShareOptions) (ShareInfo, error) {
	var info ShareInfo
	if o.Expires < 0 || o.Expires%time.Second != 0 || o.Expires > subjects.MaxShareTTL {
		return info, fmt.Errorf("share: %w: a link's life is whole seconds up to %s, not %s", ErrInvalid, subjects.MaxShareTTL, o.Expires)
	}
	r.ExpiresIn, r.Password = int64(o.Expires/time.Second), o.Password
	if err := r.Validate(); err != nil {
		return info, fmt.Errorf("share: %w", fromWire(err))
	}
	if err := c.do(ctx, call{subject: subjects.ShareCreate, body: r, reply: &info}); err != nil {
		return info, fmt.Errorf("share: %w", err)
	}
	return info, nil
}

// Shares lists the user's links that have not expired (an admin's:
// everyone's), oldest first.
func (c *Client) Shares(ctx context.Context) ([]ShareInfo, error) {
	var r subjects.ShareListReply
	if err := c.do(ctx, call{subject: subjects.ShareList, body: subjects.Empty{}, reply: &r}); err != nil {
		return nil, fmt.Errorf("share ls: %w", err)
	}
	return r.Shares, nil
}

// Unshare revokes the link id at once, on every server.
func (c *Client) Unshare(ctx context.Context, id string) error {
	if err := c.do(ctx, call{subject: subjects.ShareRemove, body: subjects.ShareRemoveRequest{ID: id}, mutating: true}); err != nil {
		return fmt.Errorf("share rm %s: %w", id, err)
	}
	return nil
}

// linkCredentials are what a link's requests carry instead of a session.
type linkCredentials struct {
	token, password string
}

// DialGateway connects as the share link gateway (subjects.GatewayUser)
// with its secret. The connection may send link requests only: use it
// through ForLink.
func DialGateway(ctx context.Context, servers []string, secret string, opts ...Option) (*Client, error) {
	o := options{timeout: time.Second, log: slog.New(slog.DiscardHandler), name: "ftfs-gateway"}
	for _, opt := range opts {
		opt(&o)
	}
	if secret == "" {
		return nil, fmt.Errorf("dial gateway: %w: no secret (%s)", ErrInvalid, subjects.EnvGatewayPassword)
	}
	if len(servers) == 0 {
		servers = []string{nats.DefaultURL}
	}
	nopts := append(connOptions(ctx, o, o.name, subjects.GatewayUser), nats.UserInfo(subjects.GatewayUser, secret))
	nc, err := connect(ctx, servers, subjects.GatewayUser, nopts, o.log)
	if err != nil {
		return nil, err
	}
	rs, err := newReplies(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{nc: nc, replies: rs, user: subjects.GatewayUser, opts: o, servers: servers}, nil
}

// ForLink is a client that uses the link token (with its password, if it
// has one) over c's connection: its Get, Stat and Put are the link's
// holder's. It shares c's connection: close c, not it.
func (c *Client) ForLink(token, password string) *Client {
	return &Client{nc: c.nc, replies: c.replies, user: c.user, opts: c.opts, servers: c.servers,
		link: &linkCredentials{token: token, password: password}}
}

// LinkInfo says what the client's link is (ForLink): its file, or the
// prefix it takes uploads into. Every use of a link starts with it, and
// the file servers count it in their audit log.
func (c *Client) LinkInfo(ctx context.Context) (LinkInfo, error) {
	var r LinkInfo
	if c.link == nil {
		return r, fmt.Errorf("link info: %w: not a link's client", ErrInvalid)
	}
	if err := c.do(ctx, call{subject: subjects.LinkInfo, replica: subjects.LinkReplicaInfo, body: subjects.Empty{}, reply: &r}); err != nil {
		return r, fmt.Errorf("link: %w", err)
	}
	return r, nil
}

// OnlyVersion makes Get fail with ErrConflict unless the file is still at
// version (FileInfo.Version): what a caller that announced a file's size
// and digest before its bytes must have.
func OnlyVersion(version string) TransferOption {
	return func(o *transferOptions) { o.version = version }
}

// address sets the subject of a request and its credentials: the session
// (when withSession), or a link's token and password on the link form of
// the subject.
func (c *Client) address(m *nats.Msg, subject string, withSession bool) {
	if c.link != nil {
		m.Subject = subjects.For(c.user, subjects.Link(subject))
		m.Header.Set(subjects.HeaderLink, c.link.token)
		if c.link.password != "" {
			m.Header.Set(subjects.HeaderLinkPassword, c.link.password)
		}
		return
	}
	m.Subject = subjects.For(c.user, subject)
	if withSession {
		m.Header.Set(subjects.HeaderSession, c.Token())
	}
}

// GetFrom writes the content of name from byte offset to its end into w
// (an HTTP range, a video's seek): the download starts at the chunk
// holding offset when the file's chunks lie together in storage, as they
// do for a file stored alone, and from the start otherwise. Only a
// download from offset 0 is checked against the file's digest, as Get
// does; w may end it early by failing a write.
func (c *Client) GetFrom(ctx context.Context, name string, offset int64, w io.Writer, opts ...TransferOption) (FileInfo, error) {
	if offset == 0 {
		return c.Get(ctx, name, w, opts...)
	}
	var o transferOptions
	for _, opt := range opts {
		opt(&o)
	}
	fi, content, err := c.getSmall(ctx, name)
	if err == nil && o.version != "" && fi.Version != o.version {
		return fi, fmt.Errorf("get %q: %w: version %s is now %s", name, ErrConflict, o.version, fi.Version)
	}
	switch {
	case errors.Is(err, ErrReadOnly):
		fi, err = c.Stat(ctx, name)
	case err == nil && (offset < 0 || offset > fi.Size):
		return fi, fmt.Errorf("get %q: %w: offset %d is outside its %d bytes", name, ErrInvalid, offset, fi.Size)
	case err == nil && content != nil:
		if _, err := w.Write(content[offset:]); err != nil {
			return fi, fmt.Errorf("get %q: write: %w", name, err)
		}
		return fi, nil
	}
	if err != nil {
		return fi, fmt.Errorf("get: %w", err)
	}
	if offset == fi.Size {
		return fi, nil
	}
	base := offset / subjects.ChunkSize * subjects.ChunkSize
	skip := &skipWriter{w: w, skip: offset - base}
	d := &downloader{c: c, fi: fi, w: skip, hash: sha256.New(), done: base, streamAt: base, seek: true, skip: skip,
		rep: reporter{f: o.progress, p: Progress{Total: fi.Size}}}
	if err := d.run(ctx); err != nil {
		return fi, fmt.Errorf("get %q from %d: %w", name, offset, err)
	}
	return fi, nil
}

// readFromStart makes a download that could not start in the middle
// (subjects.ReasonNotContiguous) read from the file's start, dropping the
// bytes before its offset. Nothing has been written yet.
func (d *downloader) readFromStart() {
	d.seek = false
	d.skip.skip += d.done
	d.done, d.streamAt = 0, 0
}

// skipWriter drops the first skip bytes written to it.
type skipWriter struct {
	w    io.Writer
	skip int64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.skip > 0 {
		d := min(s.skip, int64(len(p)))
		s.skip -= d
		p = p[d:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}
