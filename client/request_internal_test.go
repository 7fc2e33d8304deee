package client

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// TestARequestSentWhileDisconnectedGoesOutOnce: a request made while the
// connection is down waits in its buffer and goes out on reconnect; the
// silences meanwhile must not add copies of it (two copies of an upload's
// resume undo each other's fences).
func TestARequestSentWhileDisconnectedGoesOutOnce(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("broker not ready")
	}
	px := startProxy(t, ns.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	o := options{timeout: 200 * time.Millisecond, log: slog.New(slog.DiscardHandler), name: "test"}
	nc, err := nats.Connect("nats://"+px.addr, connOptions(ctx, o, o.name, "alice")...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rs, err := newReplies(nc)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{nc: nc, replies: rs, user: "alice", opts: o, token: "token"}

	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	requests := make(chan *nats.Msg, 64)
	if _, err := svc.ChanSubscribe(subjects.Stat, requests); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}

	px.cut()
	for nc.IsConnected() {
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		var fi subjects.FileInfo
		done <- c.do(ctx, call{subject: subjects.Stat, body: subjects.NameRequest{Name: "x"}, reply: &fi})
	}()
	time.Sleep(5 * o.timeout) // five silences while disconnected
	px.restore()

	var first *nats.Msg
	select {
	case first = <-requests:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not go out after the reconnect")
	}
	b, _ := json.Marshal(subjects.FileInfo{Name: "x"})
	if err := first.Respond(b); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(o.timeout)
	if n := len(requests); n > 0 {
		t.Fatalf("the request went out %d times", n+1)
	}
}

// proxy forwards TCP connections to a broker until cut, and again once
// restored, on the same address.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), target: target}
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() { // owned by p: ends when cut closes ln
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				p.wg.Add(1)
				go func() { // owned by p: ends when cut closes the conns
					defer p.wg.Done()
					_, _ = io.Copy(pair[0], pair[1])
					pair[0].Close()
				}()
			}
		}
	}()
}

// cut closes every connection and stops accepting.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore accepts connections again.
func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}
