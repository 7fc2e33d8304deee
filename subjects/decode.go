package subjects

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
)

// Decode reads a request body into v, a pointer to one of the request
// types, as strictly as every file server does: the body must be a single
// JSON object (an empty body counts as {}, which is what the NATS CLI sends
// when given no payload), with no keys but v's JSON names, spelled exactly,
// each value of its field's type, and nothing but white space after it.
// Then, when v has a Validate method, the request must pass it (required
// fields, ranges). Every error is a CodeInvalid *Error with a Reason.
func Decode(data []byte, v any) error {
	if len(data) == 0 {
		data = []byte("{}")
	}
	// First as a bare object, to see the keys exactly as sent: encoding/json
	// would match "NAME" to "name", and takes null for an empty object.
	dec := json.NewDecoder(bytes.NewReader(data))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return Rejectf(CodeInvalid, ReasonMalformedJSON, "malformed request: %s", notAnObject(err))
	}
	if rest := data[dec.InputOffset():]; len(strings.Trim(string(rest), " \t\r\n")) != 0 {
		return Rejectf(CodeInvalid, ReasonTrailingData, "malformed request: data after the JSON object")
	}
	if err := knownFields(fields, v); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Rejectf(CodeInvalid, ReasonWrongType, "malformed request: field %q must be %s, not %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return Rejectf(CodeInvalid, ReasonWrongType, "malformed request: %v", err)
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		return val.Validate()
	}
	return nil
}

// notAnObject says what is wrong with a body that does not decode as an
// object.
func notAnObject(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "null, not a JSON object"
	case errors.As(err, &te):
		return "a JSON " + te.Value + ", not a JSON object"
	default:
		return err.Error() // "unexpected EOF", "invalid character ..."
	}
}

// knownFields checks every key of a request against the JSON names of v's
// struct fields. Request types are flat, so the top level is all there is.
func knownFields(fields map[string]json.RawMessage, v any) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	names := jsonNames(t.Elem())
	var unknown []string
	for k := range fields {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown) // the same request, the same message
	return Rejectf(CodeInvalid, ReasonUnknownField, "malformed request: unknown field %q", unknown[0])
}

// jsonNames are the keys encoding/json uses for a struct's fields.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// jsonKind names the JSON a Go type decodes from, for an error message.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer that fits " + t.Kind().String()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer that fits " + t.Kind().String()
	default:
		return "a JSON value for " + t.String()
	}
}
