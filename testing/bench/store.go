package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// store is what every phase does to a system under measurement: ftfs
// through its Go client, or the same broker's object store through
// nats.go, the floor under ftfs.
type store interface {
	put(ctx context.Context, name string, r io.Reader, size int64) error
	// get writes the content to w; both implementations check the digest.
	get(ctx context.Context, name string, w io.Writer) (int64, error)
	// list counts the files whose name starts with prefix.
	list(ctx context.Context, prefix string) (int, error)
	del(ctx context.Context, name string) error
}

// System names, as they appear in the JSON and the tables.
const (
	sysFTFS   = "ftfs"
	sysCLI    = "ftfs-cli"
	sysDirect = "objectstore"
	sysSFTP   = "sftp"
	// sysNATSCLI is the NATS CLI's `nats object get`, when installed.
	sysNATSCLI = "nats-cli"
)

// ftfsStore is one ftfs client connection.
type ftfsStore struct {
	c    *client.Client
	opts []client.TransferOption
}

func (s ftfsStore) put(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := s.c.Put(ctx, name, r, size, s.opts...)
	return err
}

func (s ftfsStore) get(ctx context.Context, name string, w io.Writer) (int64, error) {
	fi, err := s.c.Get(ctx, name, w, s.opts...)
	return fi.Size, err
}

func (s ftfsStore) list(ctx context.Context, prefix string) (int, error) {
	files, err := s.c.List(ctx, prefix)
	return len(files), err
}

func (s ftfsStore) del(ctx context.Context, name string) error { return s.c.Delete(ctx, name) }

// directStore is nats.go's object store on its own bucket of the same
// broker, over its own connection as the service user (users may not
// touch JetStream).
type directStore struct {
	nc  *nats.Conn
	obs jetstream.ObjectStore
}

// directBucket is the object store bucket the direct measurements use.
const directBucket = "bench-direct"

// openDirect opens (creating if need be) the direct bucket over nc:
// file storage and one replica, as the ftfs bucket on a single broker.
func openDirect(ctx context.Context, nc *nats.Conn) (directStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return directStore{}, fmt.Errorf("jetstream: %w", err)
	}
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: directBucket, Storage: jetstream.FileStorage, Replicas: 1})
	if err != nil {
		return directStore{}, fmt.Errorf("object store %s: %w", directBucket, err)
	}
	return directStore{nc: nc, obs: obs}, nil
}

// bucket opens another object store bucket over the same connection.
func (s directStore) bucket(ctx context.Context, name string) (jetstream.ObjectStore, error) {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	return js.ObjectStore(ctx, name)
}

func (s directStore) put(ctx context.Context, name string, r io.Reader, _ int64) error {
	_, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
	return err
}

// get reads the object to its end, where nats.go checks the digest.
func (s directStore) get(ctx context.Context, name string, w io.Writer) (int64, error) {
	r, err := s.obs.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return io.Copy(w, r)
}

// list counts the objects under prefix. The object store API lists the
// whole bucket; filtering is the caller's business.
func (s directStore) list(ctx context.Context, prefix string) (int, error) {
	infos, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range infos {
		if strings.HasPrefix(o.Name, prefix) {
			n++
		}
	}
	return n, nil
}

func (s directStore) del(ctx context.Context, name string) error { return s.obs.Delete(ctx, name) }

// compact purges the tombstones of a bucket: the meta messages that mark
// its deleted objects. A listing reads the meta of every name ever stored,
// deleted ones included (an ftfs delete lists the bucket too), so without
// this each run would pay for the names every earlier run deleted, and
// the phases would depend on their order. It returns how many it purged.
func compact(ctx context.Context, nc *nats.Conn, bucket string) (int, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	stream, err := js.Stream(ctx, subjects.ObjectStream(bucket))
	if err != nil {
		return 0, fmt.Errorf("stream of %s: %w", bucket, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subjects.ObjectMetas(bucket)))
	if err != nil {
		return 0, fmt.Errorf("metas of %s: %w", bucket, err)
	}
	n := 0
	for subject := range info.State.Subjects {
		m, err := stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("meta %s: %w", subject, err)
		}
		var oi jetstream.ObjectInfo
		if err := json.Unmarshal(m.Data, &oi); err != nil || !oi.Deleted {
			continue
		}
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return n, fmt.Errorf("purge %s: %w", subject, err)
		}
		n++
	}
	return n, nil
}
