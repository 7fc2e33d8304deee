// Package gateway is `ftfs gateway`: the HTTP server through which share
// links are used. It is a NATS client like the CLI, connected as
// subjects.GatewayUser, and keeps no state: every HTTP request asks a file
// server what its link is (which checks the link, its password and the
// sharer's rights afresh), then moves the file through the client's
// ordinary transfer path, which fails over between file servers and
// brokers. Run as many as you like behind a load balancer.
//
//	GET  /s/TOKEN         the shared file (Range, If-Range, If-None-Match)
//	HEAD /s/TOKEN         its headers
//	PUT  /s/TOKEN/NAME    a new file NAME below an upload-only link's folder
//	GET  /healthz         200 while connected to a broker
//
// A link's password is the password of HTTP Basic authentication (any
// user name).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// Config configures a gateway.
type Config struct {
	// Listen is the HTTP address, HOST:PORT.
	Listen string
	// Servers are the broker URLs.
	Servers []string
	// Secret is the gateway's password (subjects.EnvGatewayPassword).
	Secret string
	// ClientOptions are passed to client.DialGateway (TLS, timeouts).
	ClientOptions []client.Option
	// Logger receives the access log and errors; nil: slog.Default().
	Logger *slog.Logger
}

// Timeouts of the HTTP server. Bodies may take long (a large download or
// upload over a slow line), so reads and writes of bodies have none; the
// headers must come quickly, and an idle keep-alive connection is closed.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownGrace     = 30 * time.Second
	maxHeaderBytes    = 32 << 10
)

// Run serves until ctx ends, then stops taking connections and lets the
// requests in progress finish (for at most shutdownGrace).
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Secret == "" {
		return fmt.Errorf("gateway: %s is not set: the file servers let in a gateway with that secret only", subjects.EnvGatewayPassword)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", cfg.Listen, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.DialGateway(dctx, cfg.Servers, cfg.Secret, append([]client.Option{client.WithLogger(log), client.WithName("ftfs-gateway")}, cfg.ClientOptions...)...)
	cancel()
	if err != nil {
		ln.Close()
		return fmt.Errorf("gateway: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	defer c.Close()
	g := &gateway{c: c, log: log}
	srv := &http.Server{
		Handler:           g.routes(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("gateway stopping: finishing the requests in progress")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("gateway: requests cut at shutdown", "err", err)
		_ = srv.Close()
	}
	<-served
	log.Info("gateway stopped")
	return nil
}

type gateway struct {
	c   *client.Client
	log *slog.Logger
}

func (g *gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", g.health)
	mux.HandleFunc("/s/", g.link)
	return g.logged(mux)
}

func (g *gateway) health(w http.ResponseWriter, _ *http.Request) {
	if !g.c.Conn().IsConnected() {
		http.Error(w, "not connected to a broker", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// link serves /s/TOKEN and /s/TOKEN/NAME.
func (g *gateway) link(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/s/")
	token, name, _ := strings.Cut(rest, "/")
	if !subjects.ValidLinkToken(token) {
		http.Error(w, "no such link", http.StatusNotFound)
		return
	}
	_, password, _ := r.BasicAuth()
	lc := g.c.ForLink(token, password)
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && name == "":
		g.download(w, r, lc)
	case r.Method == http.MethodPut && name != "":
		g.upload(w, r, lc, name)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "use GET or HEAD /s/TOKEN to download, PUT /s/TOKEN/NAME to upload", http.StatusMethodNotAllowed)
	}
}

// errRangeDone ends a download once the range asked for is written.
var errRangeDone = errors.New("range written")

// rangeWriter passes on the first left bytes written to it, and sends the response's status before the first of them, so that a
// download that fails before any byte can still be answered with an error.
type rangeWriter struct {
	w       http.ResponseWriter
	status  int
	left    int64 // bytes of the range still to pass on
	started bool
	written int64
}

func (rw *rangeWriter) start() {
	if !rw.started {
		rw.started = true
		rw.w.WriteHeader(rw.status)
	}
}

func (rw *rangeWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) == 0 {
		return n, nil
	}
	if rw.left <= 0 {
		return n, errRangeDone
	}
	rw.start()
	part := p[:min(int64(len(p)), rw.left)]
	m, err := rw.w.Write(part)
	rw.written += int64(m)
	rw.left -= int64(m)
	if err != nil {
		return m, err // the HTTP client has gone
	}
	if rw.left == 0 && len(part) < len(p) {
		return n, errRangeDone
	}
	return n, nil
}

func (g *gateway) download(w http.ResponseWriter, r *http.Request, lc *client.Client) {
	ctx := r.Context()
	info, err := lc.LinkInfo(ctx)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if info.Kind != subjects.LinkDownload || info.File == nil {
		w.Header().Set("Allow", "PUT")
		http.Error(w, "this link only takes uploads: PUT /s/TOKEN/NAME", http.StatusMethodNotAllowed)
		return
	}
	fi := *info.File
	etag := strconv.Quote(fi.Digest)
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", etag)
	h.Set("Last-Modified", fi.Modified.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	ctype := mime.TypeByExtension(path.Ext(fi.Name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	if cd := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(fi.Name)}); cd != "" {
		h.Set("Content-Disposition", cd)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag || inm == "*") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rng, whole, err := parseRange(r.Header.Get("Range"), fi.Size)
	if ir := r.Header.Get("If-Range"); ir != "" && !ifRangeHolds(ir, etag, fi.Modified) {
		rng, whole, err = byteRange{}, true, nil // changed since: the whole file
	}
	if errors.Is(err, errUnsatisfiable) {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", fi.Size))
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	status := http.StatusOK
	if whole {
		rng = byteRange{Start: 0, Length: fi.Size}
	} else {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rng.Start, rng.Start+rng.Length-1, fi.Size))
	}
	h.Set("Content-Length", strconv.FormatInt(rng.Length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	// From the chunk holding the range's start: a seek into a large video
	// does not read what lies before it.
	rw := &rangeWriter{w: w, status: status, left: rng.Length}
	_, err = lc.GetFrom(ctx, fi.Name, rng.Start, rw, client.OnlyVersion(fi.Version))
	if err != nil && !errors.Is(err, errRangeDone) {
		if !rw.started {
			h.Del("Content-Range")
			g.fail(w, r, err)
			return
		}
		// Part of the body is out: the HTTP client must see a broken
		// transfer, never a short or wrong file taken for whole.
		g.log.Warn("download broken off", "file", fi.Name, "written", rw.written, "err", err)
		panic(http.ErrAbortHandler)
	}
	rw.start() // an empty range of an empty file
}

// ifRangeHolds says whether an If-Range validator still names the file:
// its ETag, or its modification time as Last-Modified gave it.
func ifRangeHolds(validator, etag string, modified time.Time) bool {
	if strings.HasPrefix(validator, `"`) || strings.HasPrefix(validator, "W/") {
		return validator == etag
	}
	t, err := http.ParseTime(validator)
	return err == nil && t.Equal(modified.UTC().Truncate(time.Second))
}

// upload stores the body of a PUT as a new file below an upload-only
// link's folder.
func (g *gateway) upload(w http.ResponseWriter, r *http.Request, lc *client.Client, name string) {
	ctx := r.Context()
	info, err := lc.LinkInfo(ctx)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	if info.Kind != subjects.LinkUpload {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "this link only downloads its file: GET /s/TOKEN", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength < 0 {
		http.Error(w, "send the body's length (Content-Length)", http.StatusLengthRequired)
		return
	}
	full := info.Prefix + "/" + name
	if err := subjects.ValidName(full); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fi, err := lc.Put(ctx, full, r.Body, r.ContentLength, client.NoOverwrite())
	if err != nil {
		g.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(fi.Digest))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "stored %s (%d bytes)\n", fi.Name, fi.Size)
}

// fail answers an error of the file service with its HTTP status.
func (g *gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := httpStatus(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="ftfs share link", charset="UTF-8"`)
	}
	if status >= 500 {
		g.log.Warn("link request failed", "method", r.Method, "status", status, "err", err)
	}
	http.Error(w, msg, status)
}

// httpStatus maps the client's errors to HTTP: the link's refusals keep
// their meaning, storage's troubles are 503 (try again).
func httpStatus(err error) (int, string) {
	var ce *client.Error
	reason := subjects.Reason("")
	if errors.As(err, &ce) {
		reason = ce.Reason
	}
	switch {
	case reason == subjects.ReasonLinkExpired:
		return http.StatusGone, "this link has expired"
	case errors.Is(err, client.ErrNotFound):
		return http.StatusNotFound, "no such link, or its file is gone"
	case errors.Is(err, client.ErrUnauthorized):
		return http.StatusUnauthorized, "this link needs its password (as the password of HTTP Basic authentication; any user name)"
	case errors.Is(err, client.ErrThrottled):
		return http.StatusTooManyRequests, "too many wrong passwords for this link: wait, then try again"
	case errors.Is(err, client.ErrForbidden):
		return http.StatusForbidden, "this link does not allow that"
	case errors.Is(err, client.ErrConflict):
		return http.StatusConflict, "a file of that name exists already, or the file changed meanwhile"
	case errors.Is(err, client.ErrInvalid):
		return http.StatusBadRequest, "bad request: " + err.Error()
	case errors.Is(err, client.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "file too large"
	case errors.Is(err, client.ErrQuota):
		return http.StatusInsufficientStorage, "the sharer's limits are reached"
	case errors.Is(err, client.ErrIntegrity):
		return http.StatusBadGateway, "the stored file failed its integrity check"
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrBusy), errors.Is(err, client.ErrReadOnly),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "the file service is unavailable: try again"
	}
	return http.StatusInternalServerError, "internal error"
}

// statusWriter records what a handler answered, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  atomic.Int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes.Add(int64(n))
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logged writes one access log line per request. The path's token is a
// secret: the line says only which kind of path it was.
func (g *gateway) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			p := r.URL.Path
			if strings.HasPrefix(p, "/s/") {
				p = "/s/…"
			}
			g.log.Info("http", "method", r.Method, "path", p, "status", sw.status, "bytes", sw.bytes.Load(),
				"range", r.Header.Get("Range") != "", "took", time.Since(start).Round(time.Millisecond), "remote", r.RemoteAddr)
		}()
		h.ServeHTTP(sw, r)
	})
}
