// Package fileserver is the ftfs file service: the NATS micro service "ftfs"
// that every file server instance runs, whatever its role. It authorizes
// connections (auth callout), manages users and sessions, and moves file
// content in and out of the JetStream object store.
//
// No state lives only in one process: users, sessions, uploads in flight
// and files are all in JetStream, so any instance can answer any request,
// and an upload held by a dead instance is continued by another from the
// last checkpoint (see upload.go).
package fileserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// Version is the file service's version, as `nats micro ls` shows it.
const Version = "0.1.0"

// Server is one running file server instance.
type Server struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn // storage: JetStream, in subjects.Account
	front  *nats.Conn // requests and replies, in subjects.UsersAccount
	svc    micro.Service
	issuer nkeys.KeyPair

	users    jetstream.KeyValue
	sessions jetstream.KeyValue
	uploads  jetstream.KeyValue
	requests jetstream.KeyValue
	logins   jetstream.KeyValue // failed logins per user name (throttle.go)
	access   jetstream.KeyValue // access rules and groups (access.go)
	shares   jetstream.KeyValue // share links (share.go)
	throttle *loginThrottle

	instance string
	started  time.Time

	ctx    context.Context // the server's lifetime; handlers derive from it
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the server starts
	slots  chan struct{}  // bounds concurrent request handlers

	holders  *holders // uploads this instance holds (holders.go)
	stopOnce sync.Once

	// store makes the storage calls; it is read-only while JetStream has
	// lost its quorum (internal/store/quorum.go), and usersMirror and
	// sessionsMirror answer for their buckets meanwhile (quorum.go).
	store          *store.Store
	usersMirror    *mirror
	sessionsMirror *mirror
	accessMirror   *mirror     // of the access bucket (access.go)
	accessReads    accessReads // of the access record, shared (access.go)
	policies       policyCache // the access record last parsed
	sharesMirror   *mirror     // of the shares bucket (share.go)
	linkPasswords  *passedLinkPasswords
	purges         *purgeQueue // versions whose chunks may go (purge.go)
	usage          *usage      // per-user limits (usage.go)
	// shortfalls are the buckets found with fewer replicas than
	// --replicas (replicas.go).
	shortfalls replicaShortfalls
	// changes are the recent file changes, for watches (changes.go).
	changes changeRing

	authSub    *nats.Subscription
	overrunSub *nats.Subscription // subjects.UploadOverrun
	inflight   atomic.Int64       // request handlers running
	errors     atomic.Uint64      // error replies sent
	lastStart  atomic.Int64       // when the last one started, unix nanoseconds

	metrics *serverMetrics // metrics.go

	snapshotTried atomic.Bool   // the files watch has looked for a snapshot (snapshot.go)
	snapshotSeq   atomic.Uint64 // the sequence of the snapshot file as last read or written
}

// Run connects, serves until ctx is done, then drains and returns.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	s.Stop()
	return nil
}

// Start connects to the brokers, makes sure the buckets exist and starts
// serving. Stop ends it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	if cfg.Role != RolePrimary && cfg.Role != RoleBackup {
		return nil, fmt.Errorf("file server: role %q: want %q or %q", cfg.Role, RolePrimary, RoleBackup)
	}
	if cfg.Bucket != subjects.FilesBucket {
		// The brokers export this bucket's downloads and direct uploads
		// to the users' accounts, and no other.
		return nil, fmt.Errorf("file server: bucket %q: the brokers serve %q only", cfg.Bucket, subjects.FilesBucket)
	}
	issuer, err := subjects.IssuerKey(cfg.ServicePassword)
	if err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("role", cfg.Role),
		issuer:   issuer,
		started:  time.Now().UTC(),
		slots:    make(chan struct{}, 64),
		throttle: newLoginThrottle(cfg),

		usersMirror:    newMirror(),
		sessionsMirror: newMirror(),
		accessMirror:   newMirror(),
		sharesMirror:   newMirror(),
		linkPasswords:  newPassedLinkPasswords(),
		purges:         newPurgeQueue(),
		usage:          newUsage(),
		metrics:        newServerMetrics(),
	}
	s.holders = newHolders(&s.wg)
	s.accessReads = accessReads{read: s.readAccessRecord, mirror: s.accessMirror, wg: &s.wg}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.registerMetrics()
	// Served from the start, so that a probe sees a server that is still
	// connecting as alive and not yet writable.
	if err := s.startMetrics(); err != nil {
		s.cancel()
		return nil, err
	}
	succeeded := false
	defer func() {
		if !succeeded {
			s.stopMetrics()
		}
	}()

	if err := s.connect(ctx); err != nil {
		s.cancel()
		return nil, err
	}
	if err := s.openBuckets(ctx); err != nil {
		s.closeConns()
		s.cancel()
		return nil, err
	}
	if err := s.bootstrapAdmin(ctx); err != nil {
		s.closeConns()
		s.cancel()
		return nil, err
	}
	if err := s.ensureAccessRecord(ctx); err != nil {
		s.closeConns()
		s.cancel()
		return nil, err
	}
	if err := s.serve(); err != nil {
		s.closeConns()
		s.cancel()
		return nil, err
	}
	// Ready means the broker routes requests here: flush the subscriptions.
	for _, nc := range []*nats.Conn{s.nc, s.front} {
		if err := nc.FlushTimeout(10 * time.Second); err != nil {
			s.Stop()
			return nil, fmt.Errorf("file server: flush subscriptions: %w", err)
		}
	}
	for _, f := range []func(){
		s.janitor,
		s.sweeper,
		s.purger,
		func() { s.store.WatchQuorum(s.ctx, s.front) },
		func() { s.store.FollowElections(s.ctx) },
		func() { s.usersMirror.follow(s.ctx, s, s.users) },
		func() { s.sessionsMirror.follow(s.ctx, s, s.sessions) },
		func() { s.accessMirror.follow(s.ctx, s, s.access) },
		s.expireSessions,
		func() { s.sharesMirror.follow(s.ctx, s, s.shares) },
		s.sweepShares,
		s.followUsage,
		s.snapshotter,
		s.watchReplicas,
	} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f()
		}()
	}
	succeeded = true
	s.metrics.stateReady.Store(true)
	s.metrics.serving.Store(true)
	s.log.Info("file server ready", "instance", s.instance, "bucket", cfg.Bucket, "replicas", cfg.Replicas)
	return s, nil
}

// every calls f every d, the first time after d, until the server stops.
func (s *Server) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// Instance is this server's micro service ID, the token of its chunk subject.
func (s *Server) Instance() string { return s.instance }

// Stop stops serving and closes the connection. Uploads this instance holds
// stay resumable on another instance from their last checkpoint.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }

func (s *Server) stop() {
	s.metrics.serving.Store(false)
	// Stop taking requests, and answer those already received: a request
	// dropped here would cost its client a timeout.
	if s.svc != nil {
		_ = s.svc.Stop()
	}
	if s.authSub != nil {
		_ = s.authSub.Drain()
	}
	if s.overrunSub != nil {
		_ = s.overrunSub.Drain()
	}
	_ = s.nc.FlushTimeout(2 * time.Second)
	_ = s.front.FlushTimeout(2 * time.Second)
	s.changes.close()
	for deadline := time.Now().Add(requestTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		quiet := time.Since(time.Unix(0, s.lastStart.Load())) > 100*time.Millisecond
		if s.inflight.Load() == 0 && quiet {
			break
		}
	}
	s.cancel()
	s.holders.stopAll()
	s.wg.Wait()
	s.stopMetrics()
	s.closeConns()
	s.log.Info("file server stopped")
}

func withDefaults(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []string{nats.DefaultURL}
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Bucket == "" {
		cfg.Bucket = subjects.FilesBucket
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = subjects.SessionTTL
	}
	if cfg.UploadIdle <= 0 {
		cfg.UploadIdle = subjects.UploadIdle
	}
	return cfg
}

// connect opens the server's two connections: the storage connection in
// the account that holds JetStream, and the front connection in the users'
// account, which takes the requests and answers them. A user names reply
// subjects; they exist only in the users' account, where the front
// connection may publish into inboxes and nowhere that stores anything.
func (s *Server) connect(ctx context.Context) error {
	d := store.Dialer{
		Servers:  s.cfg.Servers,
		Name:     map[string]string{RolePrimary: subjects.ConnNamePrimary, RoleBackup: subjects.ConnNameBackup}[s.cfg.Role],
		Password: s.cfg.ServicePassword,
		TLSCA:    s.cfg.TLSCA,
		Log:      s.log,
		Home:     map[string]int{RolePrimary: 1, RoleBackup: 2}[s.cfg.Role],
	}
	st, err := store.Connect(ctx, d, errReadOnly)
	if err != nil {
		return err
	}
	front, err := d.Dial(ctx, subjects.FrontUser, "front")
	if err != nil {
		st.Close()
		return err
	}
	s.store, s.nc, s.front = st, st.Conn(), front
	return nil
}

// closeConns closes both connections.
func (s *Server) closeConns() {
	s.nc.Close()
	if s.front != nil {
		s.front.Close()
	}
}

// openBuckets creates the buckets or opens them when another instance got
// there first (store.Store.OpenBuckets).
func (s *Server) openBuckets(ctx context.Context) error {
	kv, err := s.store.OpenBuckets(ctx, store.BucketsConfig{
		Files:    s.cfg.Bucket,
		Replicas: s.cfg.Replicas,
		KV: []store.KVConfig{
			{Bucket: subjects.UsersBucket, Description: "ftfs users"},
			{Bucket: subjects.SessionsBucket, Description: "ftfs sessions", MaxAge: s.cfg.SessionTTL + time.Hour},
			{Bucket: subjects.UploadsBucket, Description: "ftfs uploads in flight"},
			{Bucket: subjects.RequestsBucket, Description: "ftfs outcomes of recent requests, by request id", MaxAge: 10 * time.Minute},
			{Bucket: subjects.LoginsBucket, Description: "ftfs failed logins, by digest of the user name", MaxAge: loginsKeep},
			{Bucket: subjects.AccessBucket, Description: "ftfs access rules and groups"},
			{Bucket: subjects.SharesBucket, Description: "ftfs share links, by digest of their token", MaxAge: subjects.MaxShareTTL + time.Hour},
		},
	})
	if err != nil {
		return err
	}
	s.users, s.sessions, s.uploads, s.requests, s.logins = kv[subjects.UsersBucket], kv[subjects.SessionsBucket], kv[subjects.UploadsBucket], kv[subjects.RequestsBucket], kv[subjects.LoginsBucket]
	s.access = kv[subjects.AccessBucket]
	s.shares = kv[subjects.SharesBucket]
	return nil
}

// serve registers the micro service and the auth callout responder.
func (s *Server) serve() error {
	svc, err := micro.AddService(s.front, micro.Config{
		Name:        subjects.ServiceName,
		Version:     Version,
		Description: "ftfs fault-tolerant file service",
		QueueGroup:  subjects.QueueGroup,
		Metadata: map[string]string{
			subjects.MetaRole:    s.cfg.Role,
			subjects.MetaStarted: s.started.Format(time.RFC3339),
		},
	})
	if err != nil {
		return fmt.Errorf("register micro service: %w", err)
	}
	s.svc = svc
	s.instance = svc.Info().ID

	type endpoint struct {
		name, subject string
		h             micro.Handler
	}
	endpoints := []endpoint{
		{"login", subjects.Login, s.async(s.login)},
		{"logout", subjects.Logout, s.async(s.authed(s.writable(s.logout)))},
		{"whoami", subjects.WhoAmI, s.async(s.authed(s.whoami))},
		{"list", subjects.List, s.async(s.authed(s.readable(s.list, s.replicaList)))},
		{"stat", subjects.Stat, s.async(s.authed(s.readable(s.stat, s.replicaStat)))},
		{"watch", subjects.Watch, s.async(s.authed(s.watch))},
		{"delete", subjects.Delete, s.async(s.authed(s.writable(s.delete)))},
		{"rename", subjects.Rename, s.async(s.authed(s.writable(s.rename)))},
		{"put", subjects.Put, s.async(s.putEarly(s.authed(s.writable(s.put))))},
		{"upload-open", subjects.UploadOpen, s.async(s.authed(s.writable(s.uploadOpen)))},
		{"upload-resume", subjects.UploadResume, s.async(s.authed(s.writable(s.uploadResume)))},
		{"upload-commit", subjects.UploadCommit, s.async(s.authed(s.writable(s.uploadCommit)))},
		{"upload-abort", subjects.UploadAbort, s.async(s.authed(s.writable(s.uploadAbort)))},
		{"get", subjects.Get, s.async(s.authed(s.readable(s.get, s.replicaGet)))},
		{"download", subjects.Download, s.async(s.authed(s.readable(s.download, s.replicaDownload)))},
		{"status", subjects.Status, s.async(s.authed(s.status))},
		{"user-add", subjects.UserAdd, s.async(s.authed(s.admin(s.writable(s.idempotent(s.userAdd)))))},
		{"user-rm", subjects.UserRemove, s.async(s.authed(s.admin(s.writable(s.idempotent(s.userRemove)))))},
		{"user-passwd", subjects.UserPassword, s.async(s.authed(s.writable(s.idempotent(s.userPassword))))},
		{"user-ls", subjects.UserList, s.async(s.authed(s.admin(s.userList)))},
		{"user-revoke", subjects.UserRevoke, s.async(s.authed(s.admin(s.writable(s.idempotent(s.userRevoke)))))},
		{"access-set", subjects.AccessSet, s.async(s.authed(s.writable(s.idempotent(s.accessSet))))},
		{"access-rm", subjects.AccessRemove, s.async(s.authed(s.writable(s.idempotent(s.accessRemove))))},
		{"access-show", subjects.AccessShow, s.async(s.authed(s.accessShow))},
		{"access-ls", subjects.AccessList, s.async(s.authed(s.accessList))},
		{"group-add", subjects.GroupAdd, s.async(s.authed(s.admin(s.writable(s.idempotent(s.groupAdd)))))},
		{"group-rm", subjects.GroupRemove, s.async(s.authed(s.admin(s.writable(s.idempotent(s.groupRemove)))))},
		{"group-ls", subjects.GroupList, s.async(s.authed(s.groupList))},
		// Not idempotent: the outcome holds the link's token, which no
		// server may keep; a retry after a lost answer makes a second link.
		{"share-create", subjects.ShareCreate, s.async(s.authed(s.writable(s.shareCreate)))},
		{"share-ls", subjects.ShareList, s.async(s.authed(s.shareList))},
		{"share-rm", subjects.ShareRemove, s.async(s.authed(s.writable(s.shareRemove)))},
		{"link-info", subjects.LinkInfo, s.async(s.linked("", nil, s.linkInfo))},
		{"link-get", subjects.Link(subjects.Get), s.async(s.linked(subjects.LinkDownload, nameTarget, asOp(s.readable(s.get, s.replicaGet))))},
		{"link-stat", subjects.Link(subjects.Stat), s.async(s.linked(subjects.LinkDownload, nameTarget, asOp(s.readable(s.stat, s.replicaStat))))},
		{"link-download", subjects.Link(subjects.Download), s.async(s.linked(subjects.LinkDownload, downloadTarget, asOp(s.readable(s.download, s.replicaDownload))))},
		{"link-put", subjects.Link(subjects.Put), s.async(s.linked(subjects.LinkUpload, putTarget, s.linkStored(s.writable(s.put))))},
		{"link-upload-open", subjects.Link(subjects.UploadOpen), s.async(s.linked(subjects.LinkUpload, openTarget, asOp(s.writable(s.uploadOpen))))},
		{"link-upload-resume", subjects.Link(subjects.UploadResume), s.async(s.linked(subjects.LinkUpload, s.uploadTarget(false), asOp(s.writable(s.uploadResume))))},
		{"link-upload-commit", subjects.Link(subjects.UploadCommit), s.async(s.linked(subjects.LinkUpload, s.uploadTarget(true), s.linkStored(s.writable(s.uploadCommit))))},
		{"link-upload-abort", subjects.Link(subjects.UploadAbort), s.async(s.linked(subjects.LinkUpload, s.uploadTarget(false), asOp(s.writable(s.uploadAbort))))},
	}
	if s.cfg.Fallback != nil {
		endpoints = append(endpoints, []endpoint{
			{"replica-list", subjects.ReplicaList, s.async(s.authed(s.replicaList))},
			{"replica-stat", subjects.ReplicaStat, s.async(s.authed(s.replicaStat))},
			{"replica-download", subjects.ReplicaDownload, s.async(s.authed(s.replicaDownload))},
			{"link-replica-info", subjects.LinkReplicaInfo, s.async(s.linked("", nil, s.linkInfo))},
			{"link-replica-stat", subjects.Link(subjects.ReplicaStat), s.async(s.linked(subjects.LinkDownload, nameTarget, asOp(s.replicaStat)))},
			{"link-replica-download", subjects.Link(subjects.ReplicaDownload), s.async(s.linked(subjects.LinkDownload, downloadTarget, asOp(s.replicaDownload)))},
		}...)
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, s.gate(s.measured(e.name, e.h)), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return fmt.Errorf("add endpoint %s: %w", e.name, err)
		}
	}
	// Every instance answers Stats with its own.
	err = svc.AddEndpoint("stats", s.gate(s.measured("stats", s.async(s.authed(s.stats)))),
		micro.WithEndpointSubject(subjects.Stats),
		micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("add stats endpoint: %w", err)
	}
	// Chunks must reach the instance holding their upload, in order, so this
	// endpoint is the instance's own and its handler never goes async.
	err = svc.AddEndpoint("chunk", s.gate(s.measured("chunk", micro.HandlerFunc(s.chunk))),
		micro.WithEndpointSubject(subjects.Chunk(s.instance)),
		micro.WithEndpointQueueGroupDisabled(),
		micro.WithEndpointPendingLimits(4096, 64<<20))
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("add chunk endpoint: %w", err)
	}
	err = svc.AddEndpoint("upload-commit-here", s.gate(s.measured("upload-commit-here", s.async(s.authed(s.writable(s.uploadCommit))))),
		micro.WithEndpointSubject(subjects.UploadCommitAt(s.instance)),
		micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("add commit endpoint: %w", err)
	}
	if err := s.serveAuthCallout(); err != nil {
		_ = svc.Stop()
		return err
	}
	// The brokers pair this storage connection with the instance by it
	// (their watchdog closes both connections of a frozen server).
	if _, err := s.nc.Subscribe(subjects.InstanceMark(s.instance), func(*nats.Msg) {}); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("subscribe %s: %w", subjects.InstanceMark(s.instance), err)
	}
	if s.overrunSub, err = s.front.QueueSubscribe(subjects.UploadOverrun, subjects.QueueGroup, func(m *nats.Msg) {
		s.goBounded(func() { s.dropOverrun(string(m.Data)) })
	}); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("subscribe %s: %w", subjects.UploadOverrun, err)
	}
	return nil
}

// gate drops, before anything else, a request whose reply subject is not
// in the inbox of the user its subject names: any answer, even a refusal,
// would go to somebody else, published with the service's rights.
func (s *Server) gate(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if !subjects.OwnInbox(req.Subject(), req.Reply()) {
			s.log.Warn("request dropped: reply subject outside the user's inbox", "subject", req.Subject(), "reply", req.Reply())
			return
		}
		h.Handle(req)
	})
}

// stats answers Stats with this instance's micro statistics.
func (s *Server) stats(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err
	}
	return s.svc.Stats(), nil
}
