// Package broker runs the ftfs broker: an embedded NATS server with
// JetStream on disk, alone or as one member of a three-node cluster.
//
// Security model: four accounts (authConfig). FTFS holds JetStream and the
// file servers' storage connections (subjects.ServiceUser); FTFS_USERS the
// users and the front connections that answer them (subjects.FrontUser);
// FTFS_UPLOADS the direct upload connections; SYS is the system account
// (subjects.SystemUser, only when a system password is set). No subject a
// user names, as a subject or a reply, reaches FTFS. Every connection that
// is not a service or operator identity is authorized by the file servers
// through NATS auth callout, signed with the key derived from the service
// password (subjects.IssuerKey), so authorization fails over like every
// other endpoint and no user password is known to the broker. The broker
// cuts the connections of direct uploads that have ended or overrun
// (uploads.go).
//
// Defaults: client port 4222 and monitoring port 8222 (every nats-server
// endpoint; see Config.Monitor) on 127.0.0.1, data in
// ./data/broker, and a 2 s ping interval with 2 missed pings allowed, so a
// frozen (SIGSTOPped) client is dropped within about 6 s instead of the 4
// minutes of the NATS defaults. File servers are watched more closely: one
// that answers nothing for 2 s leaves the queue group (watchdog.go).
package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftfs/ftfs/subjects"
)

// Config configures a broker. Zero values take the defaults.
type Config struct {
	Name     string // server name; unique in a cluster
	Host     string // listen host for clients, default 127.0.0.1
	Port     int    // client port, default 4222; -1 picks a free one
	HTTPPort int    // monitoring port, default 8222; -1 picks a free one
	// HTTPHost is where the monitoring port listens, default 127.0.0.1
	// (not Host: the port tells connection and user names, subscriptions
	// and stream names to whoever reaches it; see SECURITY.md).
	HTTPHost string
	// Monitor says what the monitoring port serves: MonitorFull (the
	// default: every nats-server endpoint, /healthz, /varz, /connz,
	// /jsz...), MonitorHealth (/healthz alone) or MonitorOff (no port).
	Monitor     string
	DataDir     string // JetStream store, default ./data/broker
	ConfigFile  string // a standard nats-server configuration file
	Cluster     string // cluster name; empty runs a single node
	ClusterHost string // default: Host
	ClusterPort int    // default 6222
	Routes      []string

	// TLSCert and TLSKey, when set, make the client port require TLS with
	// this certificate. They take the place of a tls block of ConfigFile.
	TLSCert, TLSKey string
	// TLSCA, with TLSCert and TLSKey, makes the routes to the other brokers
	// use TLS too, with the same certificate, and accept only peers whose
	// certificate this CA signed.
	TLSCA string

	// ServicePassword authenticates the file servers and derives the auth
	// callout issuer. Required unless ConfigFile sets up authorization.
	ServicePassword string
	// SystemPassword, when set, enables subjects.SystemUser in SYS.
	SystemPassword string

	PingInterval time.Duration // default 2s
	MaxPingsOut  int           // default 2
	Logger       *slog.Logger
	// Debug logs the server's debug output.
	Debug bool

	// eventsPassword authenticates the broker's own connection to the
	// system account (subjects.BrokerEventsUser); made at every Start.
	eventsPassword string
}

// Broker is a running broker.
type Broker struct {
	srv     *server.Server
	log     *slog.Logger
	started time.Time
	status  *statusResponder // nil when it could not start
	events  *nats.Conn       // nil when it could not start
	// stopWatch stops the watch of frozen file servers (watchdog.go); nil
	// when it did not start.
	stopWatch func()
	// stopUploads stops the watch of upload connections (uploads.go); nil
	// when it did not start.
	stopUploads func()
	// health serves /healthz alone (MonitorHealth); nil otherwise.
	health *healthServer
}

// What the monitoring port serves (Config.Monitor).
const (
	MonitorFull   = "full"
	MonitorHealth = "health"
	MonitorOff    = "off"
)

func (cfg *Config) defaults() {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = 4222
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8222
	}
	if cfg.HTTPHost == "" {
		cfg.HTTPHost = "127.0.0.1"
	}
	if cfg.Monitor == "" {
		cfg.Monitor = MonitorFull
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data/broker"
	}
	if cfg.ClusterHost == "" {
		cfg.ClusterHost = cfg.Host
	}
	if cfg.ClusterPort == 0 {
		cfg.ClusterPort = 6222
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 2 * time.Second
	}
	if cfg.MaxPingsOut <= 0 {
		cfg.MaxPingsOut = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// Options builds the nats-server options for cfg.
func (cfg Config) Options() (*server.Options, error) {
	cfg.defaults()
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		if err := opts.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("config file %s: %w", cfg.ConfigFile, err)
		}
	}
	if cfg.ServicePassword != "" {
		conf, err := authConfig(cfg)
		if err != nil {
			return nil, err
		}
		if err := opts.ProcessConfigString(conf); err != nil {
			return nil, fmt.Errorf("auth configuration: %w", err)
		}
	} else if cfg.ConfigFile == "" {
		return nil, fmt.Errorf("no service password: set %s (the secret the file servers share with the broker)", subjects.EnvServicePassword)
	}
	if cfg.ConfigFile == "" || opts.ServerName == "" {
		opts.ServerName = cfg.Name
		if opts.ServerName == "" {
			host, _ := os.Hostname()
			opts.ServerName = fmt.Sprintf("ftfs-%s-%d", host, cfg.Port)
		}
	}
	switch cfg.Monitor {
	case MonitorFull, MonitorHealth, MonitorOff:
	default:
		return nil, fmt.Errorf("broker: monitoring %q: want %q, %q or %q", cfg.Monitor, MonitorFull, MonitorHealth, MonitorOff)
	}
	if cfg.ConfigFile == "" {
		opts.Host, opts.Port = cfg.Host, cfg.Port
		if cfg.Monitor == MonitorFull {
			opts.HTTPHost, opts.HTTPPort = cfg.HTTPHost, cfg.HTTPPort
		}
		opts.JetStream = true
		opts.StoreDir = cfg.DataDir
		opts.PingInterval, opts.MaxPingsOut = cfg.PingInterval, cfg.MaxPingsOut
		if cfg.Cluster != "" {
			opts.Cluster.Name = cfg.Cluster
			opts.Cluster.Host, opts.Cluster.Port = cfg.ClusterHost, cfg.ClusterPort
			opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
		}
	}
	if err := cfg.tlsOptions(opts); err != nil {
		return nil, err
	}
	opts.NoSigs = true // the process's owner handles signals
	return opts, nil
}

// tlsOptions sets up TLS from the TLS fields. Without them it changes
// nothing, so that a tls block in ConfigFile stands.
func (cfg Config) tlsOptions(opts *server.Options) error {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		if cfg.TLSCA != "" {
			return errors.New("broker: a TLS CA without a certificate: give the broker's certificate and key too (--tls-cert, --tls-key)")
		}
		return nil
	}
	if cfg.TLSCert == "" || cfg.TLSKey == "" {
		return errors.New("broker: TLS needs both a certificate and its key (--tls-cert, --tls-key)")
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
	if err != nil {
		return fmt.Errorf("broker: TLS: %w", err)
	}
	opts.TLSConfig = tc
	if cfg.TLSCA == "" {
		return nil
	}
	rc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: true})
	if err != nil {
		return fmt.Errorf("broker: route TLS: %w", err)
	}
	if rc == nil || rc.ClientCAs == nil {
		return fmt.Errorf("broker: route TLS: no CA certificate in %s", cfg.TLSCA)
	}
	// A broker both accepts and dials routes: it checks the peers it dials
	// against the same CA as those that dial it (as nats-server does for
	// a cluster tls block).
	rc.RootCAs = rc.ClientCAs
	opts.Cluster.TLSConfig = rc
	return nil
}

// authConfig is the accounts and auth callout block for a service password.
// The broker keeps only bcrypt hashes of the passwords it is given.
//
// Accounts (subjects.Account and the two beside it): JetStream lives in
// FTFS, with the file servers' storage connections; users and the front
// connections that answer them in FTFS_USERS; direct upload connections in
// FTFS_UPLOADS. FTFS exports two services, each imported under NATS's
// reserved reply prefix: JetStream's direct get on the files stream (the
// front connections' downloads) and the files stream's chunk subjects (the
// upload connections' chunks). Nothing else of FTFS is reachable from the
// other two accounts, so no subject a user names, as a subject or as a
// reply, can touch storage.
func authConfig(cfg Config) (string, error) {
	kp, err := subjects.IssuerKey(cfg.ServicePassword)
	if err != nil {
		return "", err
	}
	issuer, _ := kp.PublicKey()
	serviceHash, err := bcrypt.GenerateFromPassword([]byte(cfg.ServicePassword), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("service password: %w", err)
	}
	authUsers := []string{strconv.Quote(subjects.ServiceUser), strconv.Quote(subjects.FrontUser)}
	var sysUsers []string
	for _, u := range []struct{ name, password string }{
		{subjects.SystemUser, cfg.SystemPassword},
		{subjects.BrokerEventsUser, cfg.eventsPassword},
	} {
		if u.password == "" {
			continue
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(u.password), bcrypt.DefaultCost)
		if err != nil {
			return "", fmt.Errorf("password of %s: %w", u.name, err)
		}
		sysUsers = append(sysUsers, fmt.Sprintf("{user: %s, password: %s}", strconv.Quote(u.name), strconv.Quote(string(hash))))
		authUsers = append(authUsers, strconv.Quote(u.name))
	}
	operator := ""
	if cfg.SystemPassword != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.SystemPassword), bcrypt.DefaultCost)
		if err != nil {
			return "", fmt.Errorf("system password: %w", err)
		}
		operator = fmt.Sprintf(", {user: %s, password: %s}", strconv.Quote(subjects.OperatorUser), strconv.Quote(string(hash)))
		authUsers = append(authUsers, strconv.Quote(subjects.OperatorUser))
	}
	download := subjects.DirectGet(subjects.ObjectStream(subjects.FilesBucket))
	chunks := subjects.ObjectChunks(subjects.FilesBucket, "*")
	return fmt.Sprintf(`
accounts {
  %[1]s {
    jetstream: enabled
    users: [ {user: %[2]s, password: %[3]s, permissions: {publish: {allow: %[4]s}, allow_responses: true}}%[18]s ]
    exports: [
      {service: %[5]s, response_type: stream, response_threshold: "1m"}
      {service: %[6]s}
    ]
  }
  %[7]s {
    users: [ {user: %[8]s, password: %[3]s, permissions: {publish: {allow: %[9]s}, subscribe: {allow: %[10]s}}} ]
    imports: [ {service: {account: %[1]s, subject: %[5]s}, to: %[11]s} ]
  }
  %[12]s {
    imports: [ {service: {account: %[1]s, subject: %[6]s}, to: %[13]s} ]
  }
  %[14]s { users: [ %[15]s ] }
}
system_account: %[14]s
authorization {
  timeout: %[19]s
  auth_callout {
    issuer: %[16]s
    account: %[1]s
    auth_users: [ %[17]s ]
  }
}
`, subjects.Account, strconv.Quote(subjects.ServiceUser), strconv.Quote(string(serviceHash)),
		quoteList(subjects.ServicePublish()), strconv.Quote(download), strconv.Quote(chunks),
		subjects.UsersAccount, strconv.Quote(subjects.FrontUser), quoteList(subjects.FrontPublish()), quoteList(subjects.FrontSubscribe()),
		strconv.Quote(subjects.DownloadImport),
		subjects.UploadsAccount, strconv.Quote(subjects.UploadChunksAll),
		subjects.SystemAccount, strings.Join(sysUsers, ", "),
		strconv.Quote(issuer), strings.Join(authUsers, ", "), operator,
		strconv.FormatFloat(subjects.AuthCalloutTimeout.Seconds(), 'f', -1, 64)), nil
}

// quoteList writes subjects as a configuration list.
func quoteList(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// readyWithin bounds a broker's start, JetStream recovery included.
const readyWithin = 15 * time.Minute

// Start starts a broker and waits until it accepts connections.
func Start(cfg Config) (*Broker, error) {
	cfg.defaults()
	cfg.eventsPassword = rand.Text()
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		what, host string
		port       int
	}{{"client", opts.Host, opts.Port}, {"monitoring", opts.HTTPHost, opts.HTTPPort}, {"cluster", opts.Cluster.Host, opts.Cluster.Port}} {
		// nats-server waits out readyWithin (15 minutes) on a listener
		// that failed: a port in use would hang the start silently (a
		// race-enabled CI run of TestTLSClusterRoutes hung on its
		// cluster port until go test's timeout).
		if p.port > 0 {
			l, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(p.port)))
			if err != nil {
				return nil, fmt.Errorf("broker: %s port %d: %w", p.what, p.port, err)
			}
			l.Close()
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{srv: srv, log: cfg.Logger.With("broker", opts.ServerName), started: time.Now().UTC()}
	srv.SetLoggerV2(&slogAdapter{log: b.log}, cfg.Debug, false, false)
	if cfg.Monitor == MonitorHealth && cfg.ConfigFile == "" {
		// Listening before the server starts, as nats-server's own port
		// does: /healthz says 503 until the broker is ready.
		if b.health, err = startHealth(srv, cfg.HTTPHost, cfg.HTTPPort); err != nil {
			return nil, fmt.Errorf("broker: monitoring port: %w", err)
		}
	}
	go srv.Start()
	// JetStream rebuilds the state of its streams before the broker
	// listens: after a crash, with gigabytes stored, that takes minutes.
	if !srv.ReadyForConnections(readyWithin) {
		srv.Shutdown()
		b.health.close()
		return nil, fmt.Errorf("broker: not ready for connections after %v (see the log)", readyWithin)
	}
	// Status is a report, not a service: a broker that cannot give it
	// still serves.
	if err := b.startStatus(cfg.ServicePassword); err != nil {
		b.log.Warn("broker status responder not running: `ftfs status` will not list this broker", "err", err)
	} else {
		b.startWatchdog()
		if b.stopUploads, err = b.startUploadGuard(); err != nil {
			b.log.Error("upload connections not watched: an ended or overrunning direct upload is cut only by its connection's expiry", "err", err)
		}
		if err := b.startEvents(cfg.eventsPassword); err != nil {
			b.log.Warn("file server departures not announced: clients will notice them by silence", "err", err)
		}
	}
	if opts.Cluster.Name != "" && opts.TLSConfig != nil && opts.Cluster.TLSConfig == nil {
		b.log.Warn("clients use TLS but the routes to the other brokers do not: give the CA (--tls-ca) to encrypt them too")
	}
	b.log.Info("broker ready", "url", srv.ClientURL(), "jetstream", opts.StoreDir, "cluster", opts.Cluster.Name,
		"tls", opts.TLSConfig != nil, "route_tls", opts.Cluster.TLSConfig != nil)
	return b, nil
}

// Run starts a broker, serves until ctx is done, and shuts it down.
func Run(ctx context.Context, cfg Config) error {
	b, err := Start(cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	b.Shutdown()
	return nil
}

// ClientURL is the URL clients connect to.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// MonitorURL is the HTTP monitoring base URL, or "" when disabled.
func (b *Broker) MonitorURL() string {
	if b.health != nil {
		return "http://" + b.health.addr
	}
	addr := b.srv.MonitorAddr()
	if addr == nil {
		return ""
	}
	return "http://" + addr.String()
}

// Server is the embedded server.
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the broker and waits for it.
func (b *Broker) Shutdown() {
	b.stopWatchdog()
	if b.stopUploads != nil {
		b.stopUploads()
	}
	b.stopEvents()
	b.stopStatus()
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.health.close()
	b.log.Info("broker stopped")
}

// slogAdapter routes nats-server's logger to slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Info(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
