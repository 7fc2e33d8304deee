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
	// Home, when 1 or 2, keeps the connection off the other home: the
	// primary (1) and the backup (2) are dialed with Servers in orders
	// that start at different brokers and fall back away from each
	// other (Preferred). Both file servers' storage connections answer
	// the brokers' auth callout: on one broker, that broker's death left
	// no callout subscriber until they reconnected, and a client
	// connecting meanwhile waited for a ping (FAULTS.md). With 0 the
	// order is random, as nats.go makes it.
	Home int
}

// Preferred orders servers for the file server whose home is home (1 or
// 2): its home broker first, then the brokers neither server calls home,
// then the other's home. With three brokers, the primary is on the first,
// the backup on the second, and when either's broker dies it moves to the
// third rather than to the other's.
func Preferred(servers []string, home int) []string {
	n := len(servers)
	if n < 2 || (home != 1 && home != 2) {
		return servers
	}
	mine, theirs := (home-1)%n, (home%2)%n
	out := []string{servers[mine]}
	for i, s := range servers {
		if i != mine && i != theirs {
			out = append(out, s)
		}
	}
	return append(out, servers[theirs])
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
	if d.Home != 0 && len(d.Servers) > 1 {
		servers = strings.Join(Preferred(d.Servers, d.Home), ",")
		opts = append(opts, nats.DontRandomize())
	}
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
	Files    string     // the object store's bucket
	Replicas int        // of every bucket
	KV       []KVConfig // the key-value buckets
}

// KVConfig is one key-value bucket. It keeps one value per key: no
// history.
type KVConfig struct {
	Bucket      string
	Description string
	MaxAge      time.Duration // how long it keeps a value; 0: for ever
}

// OpenBuckets creates the buckets or opens them when another instance got
// there first (both may start at the same moment). The object store is
// this store's from then on (objects.go); the key-value buckets are
// returned by name.
func (st *Store) OpenBuckets(ctx context.Context, c BucketsConfig) (map[string]jetstream.KeyValue, error) {
	r := c.Replicas
	var objects jetstream.ObjectStore
	var stream jetstream.Stream
	var err error
	err = RetryStartup(ctx, st.log, "object store "+c.Files, func(ctx context.Context) error {
		objects, err = st.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      c.Files,
			Description: "ftfs file content",
			Storage:     jetstream.FileStorage,
			Replicas:    r,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || isAlreadyInUse(err) {
			objects, err = st.js.ObjectStore(ctx, c.Files)
		}
		if err != nil {
			return err
		}
		stream, err = st.js.Stream(ctx, subjects.ObjectStream(c.Files))
		return err
	})
	if err != nil {
		return nil, err
	}
	st.objects, st.objectStream = objects, stream
	kvs := make(map[string]jetstream.KeyValue, len(c.KV))
	for _, k := range c.KV {
		// The stream nats.go's CreateKeyValue makes, but without direct
		// gets: reads must see every acknowledged write (a session just
		// created, an upload's last checkpoint), and a lagging follower
		// may answer a direct get. Made in one step, so that two servers
		// starting together do not race to update it.
		cfg := jetstream.StreamConfig{
			Name:              subjects.KVStream(k.Bucket),
			Subjects:          []string{subjects.KVSubjects(k.Bucket)},
			Description:       k.Description,
			MaxMsgsPerSubject: 1,
			MaxBytes:          -1,
			MaxAge:            k.MaxAge,
			MaxMsgSize:        -1,
			Storage:           jetstream.FileStorage,
			Replicas:          r,
			AllowRollup:       true,
			DenyDelete:        true,
			Duplicates:        min(2*time.Minute, cmp.Or(k.MaxAge, 2*time.Minute)),
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			Discard:           jetstream.DiscardNew,
		}
		err := RetryStartup(ctx, st.log, "key-value bucket "+k.Bucket, func(ctx context.Context) error {
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
			kvs[k.Bucket], err = st.js.KeyValue(ctx, k.Bucket)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return kvs, nil
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
