package subjects

import (
	"strings"
	"testing"
	"time"
)

func TestLinkSubjects(t *testing.T) {
	for in, want := range map[string]string{
		Get:          "ftfs.v1.ftfs-gateway.link.get",
		Download:     "ftfs.v1.ftfs-gateway.link.download",
		UploadCommit: "ftfs.v1.ftfs-gateway.link.upload.commit",
	} {
		if got := For(GatewayUser, Link(in)); got != want {
			t.Errorf("For(gateway, Link(%q)) = %q, want %q", in, got, want)
		}
	}
	// What the gateway may publish covers its link subjects and nothing a
	// user's verb is on.
	allowed := strings.TrimSuffix(GatewayPublish()[0], ">")
	if !strings.HasPrefix(For(GatewayUser, Link(Get)), allowed) || strings.HasPrefix(For(GatewayUser, Get), allowed) ||
		strings.HasPrefix(For(GatewayUser, ShareCreate), allowed) {
		t.Errorf("GatewayPublish %v does not fence the link subjects", GatewayPublish())
	}
	if err := ValidUser(GatewayUser); err == nil {
		t.Errorf("ValidUser(%q) = nil: a user could take the gateway's name", GatewayUser)
	}
}

func TestShareCreateRequestValidate(t *testing.T) {
	day := int64(24 * time.Hour / time.Second)
	for _, tc := range []struct {
		r  ShareCreateRequest
		ok bool
	}{
		{ShareCreateRequest{Name: "a.txt"}, true},
		{ShareCreateRequest{Prefix: "inbox"}, true},
		{ShareCreateRequest{Name: "a.txt", ExpiresIn: 30 * day}, true},
		{ShareCreateRequest{Name: "a.txt", Password: "eight ch"}, true},
		{ShareCreateRequest{}, false},
		{ShareCreateRequest{Name: "a.txt", Prefix: "inbox"}, false},
		{ShareCreateRequest{Name: "../a.txt"}, false},
		{ShareCreateRequest{Prefix: "inbox/"}, false},
		{ShareCreateRequest{Name: "a.txt", ExpiresIn: 30*day + 1}, false},
		{ShareCreateRequest{Name: "a.txt", ExpiresIn: -1}, false},
		{ShareCreateRequest{Name: "a.txt", Password: "short"}, false},
	} {
		if err := tc.r.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.r, err, tc.ok)
		}
	}
}

func TestValidLinkToken(t *testing.T) {
	for tok, ok := range map[string]bool{
		strings.Repeat("A", 43):       true,
		strings.Repeat("A", 42) + "_": true,
		strings.Repeat("A", 42):       false,
		strings.Repeat("A", 44):       false,
		strings.Repeat("A", 42) + "=": false,
		strings.Repeat("A", 42) + ".": false, // a subject token separator
		"":                            false,
	} {
		if ValidLinkToken(tok) != ok {
			t.Errorf("ValidLinkToken(%q) = %v", tok, !ok)
		}
	}
}
