package cluster

import (
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/storage"
)

// Embedded adapts a running embedded etcd to Local (nil for nil). It is the
// only place the controller meets etcd's server types.
func Embedded(e *embed.Etcd) Local {
	if e == nil {
		return nil
	}
	return embedded{e}
}

type embedded struct{ e *embed.Etcd }

func (m embedded) MemberID() uint64     { return uint64(m.e.Server.MemberID()) }
func (m embedded) Leader() uint64       { return uint64(m.e.Server.Leader()) }
func (m embedded) AppliedIndex() uint64 { return m.e.Server.AppliedIndex() }
func (m embedded) Revision() int64      { return m.e.Server.KV().Rev() }

func (m embedded) QuotaBytes() int64 {
	if q := m.e.Config().QuotaBackendBytes; q > 0 {
		return q
	}
	return storage.DefaultQuotaBytes
}

func (m embedded) ClientURL() string {
	if adv := m.e.Config().AdvertiseClientUrls; len(adv) > 0 {
		return adv[0].String()
	}
	return ""
}

func (m embedded) Members() []MemberInfo {
	ms := m.e.Server.Cluster().Members()
	out := make([]MemberInfo, len(ms))
	for i, mm := range ms {
		out[i] = InfoOf(mm)
	}
	return out
}

// InfoOf is what the controller reads of an etcd member.
func InfoOf(m *membership.Member) MemberInfo {
	return MemberInfo{ID: uint64(m.ID), Name: m.Name, IsLearner: m.IsLearner, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
}
