package broker

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/ftfs/ftfs/subjects"
)

// authorizeEveryone stands in for the file servers' auth callout on the
// brokers at urls: every connection is let in as a user named by its user
// name, in the users' account, with a user's permissions. It stops when
// the test ends.
func authorizeEveryone(t *testing.T, urls string, opts ...nats.Option) {
	t.Helper()
	issuer, err := subjects.IssuerKey(pw)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(urls, append([]nats.Option{nats.UserInfo(subjects.ServiceUser, pw), nats.Timeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, err = nc.Subscribe(subjects.AuthCallout, func(m *nats.Msg) {
		req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
		if err != nil {
			return
		}
		user := req.ConnectOptions.Username
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Name = user
		uc.Audience = subjects.UsersAccount
		uc.Pub.Allow.Add(subjects.UserPublish(user)...)
		uc.Sub.Allow.Add(subjects.UserSubscribe(user)...)
		resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
		resp.Audience = req.Server.ID
		if resp.Jwt, err = uc.Encode(issuer); err != nil {
			t.Errorf("sign user: %v", err)
			return
		}
		token, err := resp.Encode(issuer)
		if err != nil {
			t.Errorf("sign response: %v", err)
			return
		}
		_ = m.Respond([]byte(token))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// dialUser connects to urls as user, as authorizeEveryone lets in.
func dialUser(t *testing.T, urls, user string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, append([]nats.Option{nats.UserInfo(user, "any"), nats.CustomInboxPrefix(subjects.Inbox(user)), nats.Timeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
