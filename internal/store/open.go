package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// Dialer says how a file server reaches the brokers.
type Dialer struct {
	Servers  []string // broker URLs
	Name     string   // the connection name the brokers see
	Password string   // the service users' password
	TLSCA    string   // CA file to trust, if any
	Log      *slog.Logger
}

// Connect opens the storage connection, in the account that holds
// JetStream, and returns a Store on it: see newStore for readOnlyErr.
func Connect(ctx context.Context, d Dialer, readOnlyErr error) (*Store, error) {
	nc, err := d.Dial(ctx, subjects.ServiceUser, "storage")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return newStore(nc, js, d.Log, readOnlyErr), nil
}

// Conn is the storage connection.
func (st *Store) Conn() *nats.Conn { return st.nc }

// JetStream is the storage connection's JetStream handle.
func (st *Store) JetStream() jetstream.JetStream { return st.js }

// Close closes the storage connection.
func (st *Store) Close() { st.nc.Close() }

// Dial connects as user, waiting for the first connection: RetryOnFailedConnect
// lets the server start before the broker, and bucket setup needs somewhere
// to go.
func (d Dialer) Dial(ctx context.Context, user, conn string) (*nats.Conn, error) {
	log := d.Log.With("connection", conn)
	opts := []nats.Option{
		nats.Name(d.Name),
		nats.UserInfo(user, d.Password),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from broker", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to broker", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	if d.TLSCA != "" {
		opts = append(opts, nats.RootCAs(d.TLSCA))
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	servers := strings.Join(d.Servers, ",")
	nc, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", servers, user, err)
	}
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("connect to %s as %s: %w", servers, user, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if nc.IsClosed() {
			return nil, fmt.Errorf("connect to %s as %s: %w", servers, user, nats.ErrConnectionClosed)
		}
	}
	return nc, nil
}

// BucketsConfig says which buckets OpenBuckets makes, and how.
type BucketsConfig struct {
	Files          string        // the object store's bucket
	Replicas       int           // of every bucket
	SessionsMaxAge time.Duration // how long the sessions bucket keeps a session
	LoginsMaxAge   time.Duration // how long the logins bucket keeps a record
}

// Buckets are a file server's object store, its stream, and its key-value
// buckets.
type Buckets struct {
	Files    jetstream.ObjectStore
	Stream   jetstream.Stream // the object store's stream, for chunk and meta messages
	Users    jetstream.KeyValue
	Sessions jetstream.KeyValue
	Uploads  jetstream.KeyValue
	Requests jetstream.KeyValue
	Logins   jetstream.KeyValue // failed logins per user name
	Access   jetstream.KeyValue // access rules and groups
}

// OpenBuckets creates the buckets or opens them when another instance got
// there first (both may start at the same moment).
func (st *Store) OpenBuckets(ctx context.Context, c BucketsConfig) (Buckets, error) {
	var b Buckets
	r := c.Replicas
	var err error
	err = RetryStartup(ctx, st.log, "object store "+c.Files, func(ctx context.Context) error {
		b.Files, err = st.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      c.Files,
			Description: "ftfs file content",
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || isAlreadyInUse(err) {
			b.Files, err = st.js.ObjectStore(ctx, c.Files)
		}
		if err != nil {
			return err
		}
		b.Stream, err = st.js.Stream(ctx, subjects.ObjectStream(c.Files))
		return err
	})
	if err != nil {
		return b, err
	}
	kvs := []struct {
		dst     *jetstream.KeyValue
		bucket  string
		about   string
		history int64
		ttl     time.Duration
	}{
		{&b.Users, subjects.UsersBucket, "ftfs users", 1, 0},
		{&b.Sessions, subjects.SessionsBucket, "ftfs sessions", 1, c.SessionsMaxAge},
		{&b.Uploads, subjects.UploadsBucket, "ftfs uploads in flight", 1, 0},
		{&b.Requests, subjects.RequestsBucket, "ftfs outcomes of recent requests, by request id", 1, 10 * time.Minute},
		{&b.Logins, subjects.LoginsBucket, "ftfs failed logins, by digest of the user name", 1, c.LoginsMaxAge},
		{&b.Access, subjects.AccessBucket, "ftfs access rules and groups", 1, 0},
	}
	for _, k := range kvs {
		// The stream nats.go's CreateKeyValue makes, but without direct
		// gets: reads must see every acknowledged write (a session just
		// created, an upload's last checkpoint), and a lagging follower
		// may answer a direct get. Made in one step, so that two servers
		// starting together do not race to update it.
		cfg := jetstream.StreamConfig{
			Name:              subjects.KVStream(k.bucket),
			Subjects:          []string{subjects.KVSubjects(k.bucket)},
			Description:       k.about,
			MaxMsgsPerSubject: k.history,
			MaxBytes:          -1,
			MaxAge:            k.ttl,
			MaxMsgSize:        -1,
			Storage:           jetstream.FileStorage,
			Replicas:          r,
			AllowRollup:       true,
			DenyDelete:        true,
			Duplicates:        min(2*time.Minute, cmp.Or(k.ttl, 2*time.Minute)),
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			Discard:           jetstream.DiscardNew,
		}
		err := RetryStartup(ctx, st.log, "key-value bucket "+k.bucket, func(ctx context.Context) error {
			_, err := st.js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || isAlreadyInUse(err) {
				// Made by an earlier version, with direct gets: turn them off.
				var stream jetstream.Stream
				if stream, err = st.js.Stream(ctx, cfg.Name); err == nil {
					if have := stream.CachedInfo().Config; have.AllowDirect {
						have.AllowDirect = false
						if _, err = st.js.UpdateStream(ctx, have); err != nil {
							err = fmt.Errorf("disable direct gets: %w", err)
						}
					}
				}
			}
			if err != nil {
				return err
			}
			*k.dst, err = st.js.KeyValue(ctx, k.bucket)
			return err
		})
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

func isAlreadyInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already in use")
}

// RetryStartup retries a start-up step that fails while JetStream is still
// electing leaders or the broker is restarting.
func RetryStartup(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("start-up step failed; retrying", "step", what, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
