package fileserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// pipelinedPut uploads data keeping window chunks in flight, as the client
// library does, without its failover logic.
func (u *rawUser) pipelinedPut(name string, data []byte) error {
	var st subjects.UploadState
	if err := u.call(subjects.UploadOpen, subjects.UploadOpenRequest{Name: name, Size: int64(len(data)), Overwrite: true}, &st); err != nil {
		return err
	}
	inbox := u.nc.NewRespInbox()
	acks := make(chan *nats.Msg, 64)
	sub, err := u.nc.ChanSubscribe(inbox, acks)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	n := (len(data) + st.ChunkSize - 1) / st.ChunkSize
	inflight := 0
	for i := 0; i < n || inflight > 0; {
		for inflight < st.Window && i < n {
			m := nats.NewMsg(subjects.For(u.user, subjects.Chunk(st.Instance)))
			m.Reply = inbox
			m.Header.Set(subjects.HeaderUpload, st.Upload)
			m.Header.Set(subjects.HeaderChunk, strconv.Itoa(i))
			m.Data = data[i*st.ChunkSize : min((i+1)*st.ChunkSize, len(data))]
			if err := u.nc.PublishMsg(m); err != nil {
				return err
			}
			i++
			inflight++
		}
		select {
		case m := <-acks:
			if c := m.Header.Get(subjects.HeaderErrorCode); c != "" {
				return &subjects.Error{Code: subjects.Code(c), Message: m.Header.Get(subjects.HeaderErrorText)}
			}
			inflight--
		case <-time.After(10 * time.Second):
			return nats.ErrTimeout
		}
	}
	return u.call(subjects.UploadCommit, subjects.UploadCommitRequest{Upload: st.Upload, Size: int64(len(data)), Digest: digestBytes(data)}, nil)
}

// operatorConn connects as the operator, who may make and write buckets of
// its own (the file servers' identity may write only the ftfs buckets):
// the alternative the benchmarks measure ftfs against.
func operatorConn(b *testing.B, url string) *nats.Conn {
	nc, err := nats.Connect(url, nats.UserInfo(subjects.OperatorUser, testSystemPassword), nats.Timeout(10*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// BenchmarkPutVersusObjectStore compares an ftfs upload with nats.go's own
// object store put of the same bytes on the same broker, in one run.
func BenchmarkPutVersusObjectStore(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	url := startTestBroker(b)
	startTestServer(b, url, RolePrimary)
	admin := dialUser(b, url, AdminUser, "admin-password")
	snc := operatorConn(b, url)
	js, _ := jetstream.New(snc)
	obs, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "direct", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ftfs", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if err := admin.pipelinedPut("bench.bin", data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("objectstore", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if _, err := obs.Put(context.Background(), jetstream.ObjectMeta{Name: "bench.bin"}, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSmallPutVersusObjectStore puts 4 KiB files from 8 clients at
// once, through the client library and one file server, and through
// nats.go's object store on the same broker, everything in this process:
// a CPU profile (-cpuprofile) then shows where a small put's work goes, in
// the broker, the server and the client alike.
//
//	go test -run XXX -bench SmallPut -cpuprofile cpu.out ./primary
func BenchmarkSmallPutVersusObjectStore(b *testing.B) {
	const clients = 8
	data := make([]byte, 4<<10)
	rand.Read(data)
	url := startTestBroker(b)
	startTestServer(b, url, RolePrimary)
	ctx := context.Background()
	var users []*client.Client
	for range clients {
		c, err := client.Dial(ctx, []string{url}, client.Credentials{User: AdminUser, Password: "admin-password"})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Login(ctx); err != nil {
			b.Fatal(err)
		}
		users = append(users, c)
	}
	snc := operatorConn(b, url)
	js, _ := jetstream.New(snc)
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "direct", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	// run puts b.N files, spread over the clients, each with put(i, n).
	run := func(b *testing.B, put func(i, n int) error) {
		b.SetBytes(int64(len(data)))
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Add(1)
			go func() { // owned here: waited for below
				defer wg.Done()
				for n := i; n < b.N; n += clients {
					if err := put(i, n); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	ftfsPut := func(i, n int) error {
		_, err := users[i].Put(ctx, "small/"+strconv.Itoa(n), bytes.NewReader(data), int64(len(data)))
		return err
	}
	storePut := func(_, n int) error {
		_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "small/" + strconv.Itoa(n)}, bytes.NewReader(data))
		return err
	}
	b.Run("ftfs", func(b *testing.B) { run(b, ftfsPut) })
	b.Run("objectstore", func(b *testing.B) { run(b, storePut) })
	// Deletes of files put untimed before.
	b.Run("ftfs-delete", func(b *testing.B) {
		b.StopTimer()
		run(b, ftfsPut)
		b.StartTimer()
		run(b, func(i, n int) error { return users[i].Delete(ctx, "small/"+strconv.Itoa(n)) })
	})
	b.Run("objectstore-delete", func(b *testing.B) {
		b.StopTimer()
		run(b, storePut)
		b.StartTimer()
		run(b, func(_, n int) error { return obs.Delete(ctx, "small/"+strconv.Itoa(n)) })
	})
}
