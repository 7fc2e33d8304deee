package fileserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ftfs/ftfs/subjects"
)

// BenchmarkFilesIndex loads 100,000 files' meta messages into a files
// index as the files watch does (decode, putFile) and reports the time
// per file and the heap the index holds per file, once collected: what a
// file server's start costs per file in its bucket (README, Scale).
func BenchmarkFilesIndex(b *testing.B) {
	const n = 100_000
	metas := make([][]byte, n)
	now := time.Now().UTC()
	for i := range metas {
		metas[i], _ = json.Marshal(jetstream.ObjectInfo{
			ObjectMeta: jetstream.ObjectMeta{
				Name:     fmt.Sprintf("scale/%04d/%07d", i/1000, i),
				Metadata: map[string]string{subjects.MetaOwner: "bench", metaRequest: fmt.Sprintf("%064x", i)},
				Opts:     &jetstream.ObjectMetaOptions{ChunkSize: subjects.ChunkSize},
			},
			Bucket: subjects.FilesBucket, NUID: nuid.Next(), ModTime: now, Size: 4096, Chunks: 1,
			Digest: "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
		})
	}
	var heap float64
	for b.Loop() {
		before := heapInUse()
		u := newUsage()
		for i, m := range metas {
			f, live, err := decodeMeta(m, now)
			if err != nil {
				b.Fatal(err)
			}
			u.putFile(uint64(i+1), f, live)
		}
		u.listFiles(subjects.ListRequest{Limit: 1})
		heap = float64(heapInUse()-before) / n
		runtime.KeepAlive(u)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/file")
	b.ReportMetric(heap, "heap-B/file")
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkServerStart times a file server's start on a bucket of
// FTFS_SCALE_FILES empty files (100,000 unless set), broker and server in
// this process: from Start until its files index is loaded. With
// -cpuprofile it shows where a start's time goes, the broker's share
// included.
func BenchmarkServerStart(b *testing.B) {
	n := 100_000
	if v := os.Getenv("FTFS_SCALE_FILES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	url := startTestBroker(b)
	first := startTestServer(b, url, RolePrimary) // makes the buckets
	first.Stop()
	nc, err := nats.Connect(url, nats.UserInfo(subjects.ServiceUser, testServicePassword))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	now := time.Now().UTC()
	for i := range n {
		name := fmt.Sprintf("scale/%04d/%07d", i/1000, i)
		data, _ := json.Marshal(jetstream.ObjectInfo{
			ObjectMeta: jetstream.ObjectMeta{Name: name, Metadata: map[string]string{subjects.MetaOwner: "bench"}},
			Bucket:     subjects.FilesBucket, NUID: nuid.Next(), ModTime: now,
			Digest: "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
		})
		m := nats.NewMsg(subjects.ObjectMeta(subjects.FilesBucket, name))
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		m.Data = data
		for attempt := 0; ; attempt++ {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if attempt == 100 {
				b.Fatal(err)
			}
			<-js.PublishAsyncComplete() // stalled: too many in flight
		}
	}
	<-js.PublishAsyncComplete()
	if path := os.Getenv("FTFS_SCALE_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start := func() *Server { return startTestServer(b, url, RolePrimary) }
	if dir := os.Getenv("FTFS_SCALE_INDEX_DIR"); dir != "" {
		// Starts from the snapshot a first start writes as it stops.
		start = func() *Server {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := Start(ctx, Config{Servers: []string{url}, ServicePassword: testServicePassword, AdminPassword: "admin-password",
				Role: RolePrimary, IndexDir: dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Stop)
			return s
		}
		s := start()
		for {
			if _, loading := s.usage.filesProgress(); !loading {
				break
			}
			time.Sleep(time.Millisecond)
		}
		s.Stop()
	}
	for b.Loop() {
		start0 := time.Now()
		s := start()
		for {
			if _, loading := s.usage.filesProgress(); !loading {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(time.Since(start0).Seconds(), "s/start")
		t0 := time.Now()
		for range 5 {
			if _, err := s.lastFileChange(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(t0).Milliseconds())/5, "ms/last-change")
		t0 = time.Now()
		s.usage.listFiles(subjects.ListRequest{Prefix: "scale/0003/"})
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "ms/first-page")
		t0 = time.Now()
		for range 5 {
			if err := s.syncCatalog(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/5/1000, "ms/sync")
		t0 = time.Now()
		for range 5 {
			s.usage.listFiles(subjects.ListRequest{Prefix: "scale/0003/"})
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/5/1000, "ms/page")
		s.Stop()
	}
}
