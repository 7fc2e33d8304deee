package subjects

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDecodeNamesWhatIsWrong(t *testing.T) {
	cases := []struct {
		body   string
		into   any
		reason Reason // "" for accepted
		text   string
	}{
		{`{"name":"a"}`, &NameRequest{}, "", ""},
		{` {"name":"a"}` + "\n", &NameRequest{}, "", ""},
		{``, &Empty{}, "", ""},
		{``, &ListRequest{}, "", ""},
		{`{}`, &Empty{}, "", ""},
		{``, &NameRequest{}, ReasonMissingField, `missing field "name"`},
		{`{"name":"a"`, &NameRequest{}, ReasonMalformedJSON, "unexpected EOF"},
		{`{"name":`, &NameRequest{}, ReasonMalformedJSON, "unexpected EOF"},
		{`{`, &Empty{}, ReasonMalformedJSON, "unexpected EOF"},
		{`nope`, &NameRequest{}, ReasonMalformedJSON, "invalid character"},
		{`null`, &ListRequest{}, ReasonMalformedJSON, "null, not a JSON object"},
		{`[]`, &ListRequest{}, ReasonMalformedJSON, "array, not a JSON object"},
		{`"x"`, &Empty{}, ReasonMalformedJSON, "string, not a JSON object"},
		{` `, &Empty{}, ReasonMalformedJSON, "EOF"},
		{`{"nmae":"a"}`, &NameRequest{}, ReasonUnknownField, `unknown field "nmae"`},
		{`{"NAME":"a"}`, &NameRequest{}, ReasonUnknownField, `unknown field "NAME"`},
		{`{"x":1}`, &Empty{}, ReasonUnknownField, `unknown field "x"`},
		{`{"name":"a","b":1,"a":2}`, &NameRequest{}, ReasonUnknownField, `unknown field "a"`},
		{`{"name":"a"} {}`, &NameRequest{}, ReasonTrailingData, "data after"},
		{`{"name":"a"}}`, &NameRequest{}, ReasonTrailingData, "data after"},
		{`{"name":"a"}` + "\v", &NameRequest{}, ReasonTrailingData, "data after"},
		{`{"name":1}`, &NameRequest{}, ReasonWrongType, `field "name" must be a string, not number`},
		{`{"name":"a","size":"3"}`, &UploadOpenRequest{}, ReasonWrongType, `field "size"`},
		{`{"name":"a","size":1e99}`, &UploadOpenRequest{}, ReasonWrongType, `field "size"`},
		{`{"name":"a","version":"v","after":-1}`, &DownloadRequest{}, ReasonWrongType, `field "after" must be a non-negative integer`},
		{`{"name":""}`, &NameRequest{}, ReasonMissingField, `missing field "name"`},
		{`{"user":"a"}`, &LoginRequest{}, ReasonMissingField, `missing field "password"`},
		{`{"password":"p"}`, &LoginRequest{}, ReasonMissingField, `missing field "user"`},
		{`{"from":"a"}`, &RenameRequest{}, ReasonMissingField, `missing field "to"`},
		{`{"to":"a"}`, &RenameRequest{}, ReasonMissingField, `missing field "from"`},
		{`{"size":3}`, &UploadOpenRequest{}, ReasonMissingField, `missing field "name"`},
		{`{"name":"a","size":-1}`, &UploadOpenRequest{}, "", ""},
		{`{"name":"a","size":-2}`, &UploadOpenRequest{}, ReasonOutOfRange, "size -2"},
		{`{"name":"a","size":524288,"digest":"d"}`, &PutRequest{}, "", ""},
		{`{"name":"a","size":524289,"digest":"d"}`, &PutRequest{}, ReasonOutOfRange, "size 524289"},
		{`{"name":"a","size":-1,"digest":"d"}`, &PutRequest{}, ReasonOutOfRange, "size -1"},
		{`{"name":"a","size":3}`, &PutRequest{}, ReasonMissingField, `missing field "digest"`},
		{`{}`, &UploadRequest{}, ReasonMissingField, `missing field "upload"`},
		{`{"size":3,"digest":"d"}`, &UploadCommitRequest{}, ReasonMissingField, `missing field "upload"`},
		{`{"upload":"u","size":3}`, &UploadCommitRequest{}, ReasonMissingField, `missing field "digest"`},
		{`{"upload":"u","size":-3,"digest":"d"}`, &UploadCommitRequest{}, ReasonOutOfRange, "size -3"},
		{`{"version":"v"}`, &DownloadRequest{}, ReasonMissingField, `missing field "name"`},
		{`{"name":"a"}`, &DownloadRequest{}, ReasonMissingField, `missing field "version"`},
		{`{"name":"a","version":"v","offset":-1}`, &DownloadRequest{}, ReasonBadOffset, "offset -1 is negative"},
		{`{"name":"a","version":"v","max":-1}`, &DownloadRequest{}, ReasonOutOfRange, "max -1"},
		{`{"limit":-1}`, &ListRequest{}, ReasonOutOfRange, "limit -1"},
		{`{"password":"secret-password"}`, &UserRequest{}, ReasonMissingField, `missing field "user"`},
		{`{"user":"bob"}`, &UserRequest{}, "", ""},
		{`{"prefix":"a/","after":7,"wait":1000000000,"max":10}`, &WatchRequest{}, "", ""},
		{`{"now":true}`, &WatchRequest{}, "", ""},
		{`{"wait":-1}`, &WatchRequest{}, ReasonOutOfRange, "wait -1"},
		{`{"max":-1}`, &WatchRequest{}, ReasonOutOfRange, "max -1"},
		{`{"after":-1}`, &WatchRequest{}, ReasonWrongType, `"after"`},
		{`{"since":3}`, &WatchRequest{}, ReasonUnknownField, "since"},
		{`{"prefix":"` + strings.Repeat("p", MaxNameLen+1) + `"}`, &WatchRequest{}, ReasonNameTooLong, "prefix"},
	}
	for _, c := range cases {
		err := Decode([]byte(c.body), c.into)
		if c.reason == "" {
			if err != nil {
				t.Errorf("Decode(%q, %T) = %v, want accepted", c.body, c.into, err)
			}
			continue
		}
		if err == nil || CodeOf(err) != CodeInvalid || ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.text) {
			t.Errorf("Decode(%q, %T) = %v (reason %q), want %s mentioning %q", c.body, c.into, err, ReasonOf(err), c.reason, c.text)
		}
	}
}

// Every request a server decodes says what it requires.
func TestEveryRequestValidates(t *testing.T) {
	for _, v := range []any{LoginRequest{}, NameRequest{}, ListRequest{}, RenameRequest{}, UploadOpenRequest{}, PutRequest{}, UploadRequest{}, UploadCommitRequest{}, DownloadRequest{}, UserRequest{}, WatchRequest{}} {
		if _, ok := v.(interface{ Validate() error }); !ok {
			t.Errorf("%T has no Validate method", v)
		}
	}
}

// fuzzDecode checks Decode for the request type T on arbitrary bodies:
//   - it never panics, and every refusal is a CodeInvalid *Error with a
//     Reason and a message;
//   - what it accepts is what encoding/json reads from the same body (it is
//     stricter, never different), passes Validate, and survives a round
//     trip: encoded again, it decodes to an equal value;
//   - whatever encoding/json reads from the body, encoded again, is
//     accepted exactly when Validate accepts it, refused with Validate's
//     error: an object with the right keys and types is judged by Validate
//     alone.
func fuzzDecode[T any](f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		err := Decode(data, &v)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalid || e.Reason == "" || e.Message == "" {
				t.Fatalf("Decode(%q) = %#v: want a CodeInvalid *Error with a reason and a message", data, err)
			}
		} else {
			if len(data) > 0 {
				var std T
				if err := json.Unmarshal(data, &std); err != nil || !reflect.DeepEqual(std, v) {
					t.Fatalf("Decode(%q) = %+v, but encoding/json reads %+v (%v)", data, v, std, err)
				}
				var keys map[string]json.RawMessage
				_ = json.Unmarshal(data, &keys)
				for k := range keys {
					if !slices.Contains(tagNames[T](), k) {
						t.Fatalf("Decode(%q) accepted key %q; %T has %q", data, k, v, tagNames[T]())
					}
				}
			}
			if err := validate(v); err != nil {
				t.Fatalf("Decode(%q) accepted %+v, which Validate refuses: %v", data, v, err)
			}
			again := roundTrip[T](t, v)
			if err := Decode(again, new(T)); err != nil {
				t.Fatalf("Decode(%q) accepted %+v, but not its encoding %s: %v", data, v, again, err)
			}
			var w T
			_ = Decode(again, &w)
			if !reflect.DeepEqual(v, w) {
				t.Fatalf("round trip of %q: %+v became %+v (via %s)", data, v, w, again)
			}
		}
		var lax T
		if json.Unmarshal(data, &lax) != nil {
			return
		}
		enc := roundTrip[T](t, lax)
		got, want := Decode(enc, new(T)), validate(lax)
		if (got == nil) != (want == nil) || ReasonOf(got) != ReasonOf(want) {
			t.Fatalf("%+v encoded as %s: Decode says %v, Validate says %v", lax, enc, got, want)
		}
	})
}

// tagNames lists the JSON keys of T's fields as its struct tags spell them.
func tagNames[T any]() []string {
	var names []string
	t := reflect.TypeFor[T]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

func validate(v any) error {
	if val, ok := v.(interface{ Validate() error }); ok {
		return val.Validate()
	}
	return nil
}

func roundTrip[T any](t *testing.T, v T) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	return b
}

// Seeds shared by every decoder: the ways a body goes wrong.
var badBodies = []string{"", " ", "{", "}", "{}", "{}}", "{} {}", "null", "[]", `"x"`, "1", `{"a":1}`, `{"":1}`, "\xff", `{"a":"\ud800"}`}

func FuzzDecodeEmpty(f *testing.F) { fuzzDecode[Empty](f, badBodies...) }

func FuzzDecodeLoginRequest(f *testing.F) {
	fuzzDecode[LoginRequest](f, append(badBodies, `{"user":"alice","password":"pw"}`, `{"user":"alice"}`, `{"USER":"a","password":"p"}`)...)
}

func FuzzDecodeNameRequest(f *testing.F) {
	fuzzDecode[NameRequest](f, append(badBodies, `{"name":"a/b"}`, `{"name":""}`, `{"name":1}`, `{"name":"a","name":"b"}`, `{"name":"\u0000"}`)...)
}

func FuzzDecodeListRequest(f *testing.F) {
	fuzzDecode[ListRequest](f, append(badBodies, `{"prefix":"a/","after":"a/b","limit":10}`, `{"limit":-1}`, `{"limit":1e3}`, `{"limit":9223372036854775808}`)...)
}

func FuzzDecodeRenameRequest(f *testing.F) {
	fuzzDecode[RenameRequest](f, append(badBodies, `{"from":"a","to":"b","overwrite":true}`, `{"from":"a"}`, `{"from":"a","to":"b","overwrite":"yes"}`)...)
}

func FuzzDecodeUploadOpenRequest(f *testing.F) {
	fuzzDecode[UploadOpenRequest](f, append(badBodies, `{"name":"a","size":-1}`, `{"name":"a","size":-2}`, `{"name":"a","size":3.5}`, `{"size":3}`)...)
}

func FuzzDecodePutRequest(f *testing.F) {
	fuzzDecode[PutRequest](f, append(badBodies, `{"name":"a","size":3,"digest":"SHA-256=x","overwrite":true}`, `{"name":"a","size":524289,"digest":"d"}`, `{"name":"a","digest":"d","size":-1}`, `{"size":3}`)...)
}

func FuzzDecodeUploadRequest(f *testing.F) {
	fuzzDecode[UploadRequest](f, append(badBodies, `{"upload":"u"}`, `{"upload":""}`, `{"upload":null}`)...)
}

func FuzzDecodeUploadCommitRequest(f *testing.F) {
	fuzzDecode[UploadCommitRequest](f, append(badBodies, `{"upload":"u","size":3,"digest":"SHA-256=x"}`, `{"upload":"u","size":-1,"digest":"d"}`, `{"upload":"u","digest":"d"}`)...)
}

func FuzzDecodeDownloadRequest(f *testing.F) {
	fuzzDecode[DownloadRequest](f, append(badBodies, `{"name":"a","version":"v","after":7,"max":16}`, `{"name":"a","version":"v","offset":-1}`, `{"name":"a","version":"v","after":18446744073709551615}`, `{"name":"a","version":"v","after":18446744073709551616}`)...)
}

func FuzzDecodeUserRequest(f *testing.F) {
	fuzzDecode[UserRequest](f, append(badBodies, `{"user":"bob","password":"password1","admin":true}`, `{"password":"p"}`, `{"user":"bob","admin":1}`)...)
}
