package backup

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// RestoreConfig says what to restore where.
type RestoreConfig struct {
	Servers         []string
	ServicePassword string
	Bucket          string // default subjects.FilesBucket
	Replicas        int    // of the bucket, if restore creates it
	Dir             string // a backup's replica dir
	// Owner owns files the replica's manifest does not name (default
	// "admin").
	Owner  string
	Logger *slog.Logger
	// TLSCA, when set, is the CA file that signed the brokers'
	// certificates (see primary.Config.TLSCA).
	TLSCA string
}

// RestoreReport counts what a restore did.
type RestoreReport struct {
	Restored int
	Bytes    int64
	// Skipped lists files left out, with the reason (a copy that no longer
	// matches its digest, a name that is not a valid file name).
	Skipped []string
}

// Restore loads a replica dir into an empty files bucket: every file whose
// content still matches the digest the manifest recorded, with its owner.
// It is the way back from a total loss of the JetStream data.
func Restore(ctx context.Context, cfg RestoreConfig) (RestoreReport, error) {
	var rep RestoreReport
	if cfg.Bucket == "" {
		cfg.Bucket = subjects.FilesBucket
	}
	if cfg.Owner == "" {
		cfg.Owner = "admin"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return rep, fmt.Errorf("restore: %s is not a directory", cfg.Dir)
	}
	manifest, err := loadManifest(dir)
	if err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	opts := []nats.Option{nats.Name("ftfs-restore"), nats.UserInfo(subjects.ServiceUser, cfg.ServicePassword), nats.MaxReconnects(-1),
		// A busy broker may take more than the 2 s default to send its INFO.
		nats.Timeout(10 * time.Second)}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), opts...)
	if err != nil {
		return rep, fmt.Errorf("restore: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		return rep, err
	}
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: cfg.Bucket, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
	if err != nil {
		if obs, err = js.ObjectStore(ctx, cfg.Bucket); err != nil {
			return rep, fmt.Errorf("restore: open bucket %s: %w", cfg.Bucket, err)
		}
	}
	if list, err := obs.List(ctx); err == nil && len(list) > 0 {
		for _, o := range list {
			if !o.Deleted {
				return rep, fmt.Errorf("restore: bucket %s is not empty (it holds %q); restore only into an empty bucket", cfg.Bucket, o.Name)
			}
		}
	} else if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return rep, fmt.Errorf("restore: list bucket: %w", err)
	}

	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".ftfs-") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		if err := subjects.ValidName(name); err != nil {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		digest, size, err := fileDigest(p)
		if err != nil {
			return err
		}
		owner := cfg.Owner
		if e, ok := manifest[name]; ok {
			if e.Digest != digest || e.Size != size {
				rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: the copy no longer matches its recorded digest", name))
				return nil
			}
			if e.Owner != "" {
				owner = e.Owner
			}
		}
		if err := putFile(ctx, obs, name, p, owner, digest); err != nil {
			return fmt.Errorf("restore %q: %w", name, err)
		}
		rep.Restored++
		rep.Bytes += size
		cfg.Logger.Info("restored", "name", name, "size", size, "owner", owner)
		return nil
	})
	if err != nil {
		return rep, err
	}
	return rep, nil
}

func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return "SHA-256=" + base64.URLEncoding.EncodeToString(h.Sum(nil)), n, nil
}

// putFile stores one file, retrying the whole object when the object store
// writer fails (it purges what it wrote), and checks the stored digest.
func putFile(ctx context.Context, obs jetstream.ObjectStore, name, p, owner, digest string) error {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		info, err := obs.Put(ctx, jetstream.ObjectMeta{
			Name:     name,
			Metadata: map[string]string{subjects.MetaOwner: owner},
			Opts:     &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
		}, f)
		f.Close()
		if err == nil && info.Digest == digest {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("stored digest %s, want %s", info.Digest, digest)
		}
		last = err
		// The writer may have stored the meta message of an object whose
		// chunks it then purged: never leave that listed.
		_ = obs.Delete(ctx, name)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
	return last
}
