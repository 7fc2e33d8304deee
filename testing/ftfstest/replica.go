package ftfstest

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
)

// Context is a context that ends after d or with the test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ReplicaMatches waits up to a minute until the backup's replica dir holds
// every file of the bucket, by digest, and nothing else, and fails t if it
// does not.
func (sys *System) ReplicaMatches(t *testing.T) {
	t.Helper()
	obs := sys.ObjectStore(t)
	var diff []string
	defer func() {
		if t.Failed() {
			t.Logf("replica differences: %v", diff)
		}
	}()
	Eventually(t, time.Minute, "the replica dir matching the bucket", func() bool {
		list, err := obs.List(Context(t, 2*time.Minute))
		if err != nil {
			return false
		}
		want := map[string]string{}
		for _, o := range list {
			if !o.Deleted {
				want[o.Name] = o.Digest
			}
		}
		got := map[string]string{}
		_ = filepath.WalkDir(sys.ReplicaDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(p)[0] == '.' {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(sys.ReplicaDir, p)
			sum := sha256.Sum256(b)
			got[filepath.ToSlash(rel)] = subjects.Digest(sum[:])
			return nil
		})
		diff = diff[:0]
		for n, d := range want {
			if got[n] != d {
				diff = append(diff, "missing or different: "+n)
			}
		}
		for n := range got {
			if _, ok := want[n]; !ok {
				diff = append(diff, "extra: "+n)
			}
		}
		return len(diff) == 0
	})
}
