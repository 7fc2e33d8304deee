package main

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ftfs/ftfs/testing/ftfstest"
)

// treeDirs is how many directories the tree's files are spread over.
const treeDirs = 100

// tree puts a directory of -tree-count files of -small-size, in
// treeDirs subdirectories, -runs times: with `ftfs put -r` (the CLI, a
// process of its own, as a user would), with nats.go's object store
// putting them one by one over one connection (reading each file, as the
// CLI does), and with `sftp -r` when an sshd is installed. A failed
// batch is a failed sample.
func (b *bench) tree() {
	dir := b.writeTree()
	c := b.sys.CLI(b.tb)
	if _, stderr, code := c.Run(b.tb, nil, []string{"FTFS_PASSWORD=" + b.pw}, "login", benchUser); code != 0 {
		b.tb.Fatalf("ftfs login: %s", stderr)
	}
	cleaners := b.directClients(8)
	systems := []string{sysCLI, sysDirect}
	if b.sftp != nil {
		systems = append(systems, sysSFTP)
	}
	b.settle("the tree's writing", nil)
	n := b.cfg.TreeCount
	for run := 1; run <= b.cfg.Runs; run++ {
		prefix := fmt.Sprintf("tree/%d", run)
		for _, system := range rotate(systems, run-1) {
			s := Sample{Phase: "tree", Op: "put", System: system, Run: run, Files: n, Bytes: int64(n) * b.cfg.SmallSize}
			start := time.Now()
			cpu := b.cpuEach()
			var err error
			switch system {
			case sysCLI:
				var res ftfstest.Result
				res, err = b.treeCLI(c, dir, prefix)
				s.CPU = map[string]float64{"cli": res.CPU.Seconds()}
				s.RSS = map[string]int64{"cli": res.MaxRSS}
			case sysDirect:
				err = b.treeDirect(dir, prefix)
			default:
				err = b.treeSFTP(dir, prefix)
			}
			s.Seconds, s.Err = since(start), errText(err)
			for p, ticks := range b.cpuEach() {
				if s.CPU == nil {
					s.CPU = map[string]float64{}
				}
				s.CPU[p] = float64(ticks-cpu[p]) / clockTicks
			}
			b.add(s)
			b.logf("tree run %d: %s put -r %d×%s: %s", run, system, n, sizeText(b.cfg.SmallSize), describe(s))
			if system == sysCLI {
				b.settle("backup replica of "+prefix, b.replicaTree(prefix, n))
			} else {
				b.settle(system+" put -r", nil)
			}
		}
		b.dropTree(prefix, cleaners)
	}
}

// writeTree writes the tree's files, each different (its index leads the
// content), and returns its directory.
func (b *bench) writeTree() string {
	dir := filepath.Join(b.tb.TempDir(), "tree")
	content := ftfstest.RandomBytes(int(b.cfg.SmallSize))
	for i := range b.cfg.TreeCount {
		p := filepath.Join(dir, treeFile(i))
		if i < treeDirs {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.tb.Fatal(err)
			}
		}
		binary.BigEndian.PutUint64(content, uint64(i))
		if err := os.WriteFile(p, content, 0o644); err != nil {
			b.tb.Fatal(err)
		}
	}
	b.logf("tree: %d files of %s in %d directories, %s", b.cfg.TreeCount, sizeText(b.cfg.SmallSize), treeDirs, dir)
	return dir
}

// treeFile is the path of the tree's file i below its directory.
func treeFile(i int) string { return fmt.Sprintf("d%02d/f%05d", i%treeDirs, i) }

// treeCLI runs `ftfs put -r dir prefix`.
func (b *bench) treeCLI(c *ftfstest.CLI, dir, prefix string) (ftfstest.Result, error) {
	var out strings.Builder
	res := c.Exec(b.tb, nil, &out, nil, "put", "-r", dir, prefix)
	if res.Code != 0 {
		return res, fmt.Errorf("ftfs put -r exited %d: %s", res.Code, strings.TrimSpace(res.Stderr))
	}
	if want := fmt.Sprintf("uploaded %d files", b.cfg.TreeCount); !strings.Contains(out.String(), want) {
		return res, fmt.Errorf("ftfs put -r said %q, want %q", strings.TrimSpace(out.String()), want)
	}
	return res, nil
}

// cpuEach is the CPU time the broker and each file server have used, in
// ticks.
func (b *bench) cpuEach() map[string]int64 {
	out := map[string]int64{}
	for p, pid := range b.pids() {
		out[p] = cpuTicks(pid)
	}
	return out
}

// treeDirect walks the tree and puts each file through the object store,
// one after the other, over one connection.
func (b *bench) treeDirect(dir, prefix string) error {
	ctx, cancel := b.ctx()
	defer cancel()
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return b.direct.put(ctx, prefix+"/"+filepath.ToSlash(rel), f, b.cfg.SmallSize)
	})
}

// treeSFTP runs `sftp -b` with `put -r`.
func (b *bench) treeSFTP(dir, prefix string) error {
	ctx, cancel := b.ctx()
	defer cancel()
	return b.sftp.batch(ctx, fmt.Sprintf("put -r %q %q", dir, b.sftp.remote(prefix)))
}

// replicaTree says whether the backup's replica holds n files below
// prefix.
func (b *bench) replicaTree(prefix string, n int) func() bool {
	return func() bool {
		count := 0
		_ = filepath.WalkDir(filepath.Join(b.sys.ReplicaDir, prefix), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				count++
			}
			return nil
		})
		return count == n
	}
}

// dropTree deletes a run's tree from both buckets through the object
// store API, over the cleaners' connections (as smallCleanup does, for
// the same reason), and from the sftp dir, and waits until the replica
// has let it go.
func (b *bench) dropTree(prefix string, cleaners []store) {
	b.deleteEverywhere(prefix, b.cfg.TreeCount, cleaners, func(i int) string { return prefix + "/" + treeFile(i) })
	if b.sftp != nil {
		os.RemoveAll(b.sftp.remote(prefix))
	}
	b.settle("backup replica without "+prefix, b.replicaTree(prefix, 0))
	b.compact()
}
