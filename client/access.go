package client

import (
	"context"
	"fmt"

	"github.com/ftfs/ftfs/subjects"
)

// AccessRule, AccessShow and GroupInfo are the wire types of access rules
// and groups (subjects/access.go has the rules' syntax).
type (
	AccessRule = subjects.AccessRule
	AccessShow = subjects.AccessShowReply
	GroupInfo  = subjects.GroupInfo
)

// SetAccess gives the folder prefix ("" for the root, otherwise ending in
// "/") the rule lines, such as "read,list: alice, @eng", in place of the
// one it had or inherited. It takes the admin right at the folder or
// above, or a site admin. A malformed rule is ErrInvalid before anything
// is sent.
func (c *Client) SetAccess(ctx context.Context, prefix string, lines ...string) (AccessRule, error) {
	req := subjects.AccessSetRequest{Prefix: prefix, Lines: lines}
	if err := req.Validate(); err != nil {
		return AccessRule{}, fmt.Errorf("set access of %q: %w", prefix, fromWire(err))
	}
	var r AccessRule
	if err := c.do(ctx, call{subject: subjects.AccessSet, body: req, reply: &r, mutating: true}); err != nil {
		return AccessRule{}, fmt.Errorf("set access of %q: %w", prefix, err)
	}
	return r, nil
}

// RemoveAccess removes the rule stored at prefix: the folder inherits its
// parent's rule again (or its built-in one).
func (c *Client) RemoveAccess(ctx context.Context, prefix string) error {
	req := subjects.AccessPrefixRequest{Prefix: prefix}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("remove access rule of %q: %w", prefix, fromWire(err))
	}
	if err := c.do(ctx, call{subject: subjects.AccessRemove, body: req, mutating: true}); err != nil {
		return fmt.Errorf("remove access rule of %q: %w", prefix, err)
	}
	return nil
}

// ShowAccess is the rule governing path (a file name, or a folder ending
// in "/"), the folder it comes from, and what the caller may do there.
func (c *Client) ShowAccess(ctx context.Context, path string) (AccessShow, error) {
	req := subjects.AccessShowRequest{Path: path}
	if err := req.Validate(); err != nil {
		return AccessShow{}, fmt.Errorf("show access of %q: %w", path, fromWire(err))
	}
	var r AccessShow
	if err := c.do(ctx, call{subject: subjects.AccessShow, body: req, reply: &r}); err != nil {
		return AccessShow{}, fmt.Errorf("show access of %q: %w", path, err)
	}
	return r, nil
}

// ListAccess lists the stored rules the caller may see (a site admin sees
// every one), by prefix.
func (c *Client) ListAccess(ctx context.Context) ([]AccessRule, error) {
	var r subjects.AccessListReply
	if err := c.do(ctx, call{subject: subjects.AccessList, body: subjects.Empty{}, reply: &r}); err != nil {
		return nil, fmt.Errorf("list access rules: %w", err)
	}
	return r.Rules, nil
}

// AddToGroup adds users to group, creating it (admin only).
func (c *Client) AddToGroup(ctx context.Context, group string, users ...string) (GroupInfo, error) {
	req := subjects.GroupRequest{Group: group, Users: users}
	if err := req.Validate(); err != nil {
		return GroupInfo{}, fmt.Errorf("add to group %q: %w", group, fromWire(err))
	}
	var r GroupInfo
	if err := c.do(ctx, call{subject: subjects.GroupAdd, body: req, reply: &r, mutating: true}); err != nil {
		return GroupInfo{}, fmt.Errorf("add to group %q: %w", group, err)
	}
	return r, nil
}

// RemoveFromGroup removes users from group, or with no users the group
// itself (admin only). Rules naming a removed group give its former
// members nothing.
func (c *Client) RemoveFromGroup(ctx context.Context, group string, users ...string) error {
	req := subjects.GroupRequest{Group: group, Users: users}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("remove from group %q: %w", group, fromWire(err))
	}
	if err := c.do(ctx, call{subject: subjects.GroupRemove, body: req, mutating: true}); err != nil {
		return fmt.Errorf("remove from group %q: %w", group, err)
	}
	return nil
}

// ListGroups lists group, or with "" every group the caller may see: an
// admin every one, a user those they are in.
func (c *Client) ListGroups(ctx context.Context, group string) ([]GroupInfo, error) {
	req := subjects.GroupListRequest{Group: group}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("list groups: %w", fromWire(err))
	}
	var r subjects.GroupListReply
	if err := c.do(ctx, call{subject: subjects.GroupList, body: req, reply: &r}); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return r.Groups, nil
}
