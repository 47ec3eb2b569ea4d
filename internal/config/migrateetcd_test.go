package config

import (
	"strings"
	"testing"
)

func TestDeployedEtcdAndUpgradeConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the errors; "" for valid
	}{
		{name: "none", yaml: ""},
		{name: "deployed etcd over http", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: [http://10.0.0.1:2379]}"},
		{name: "deployed etcd with mTLS", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: [https://a:2379, https://b:2379], tls: {caFile: /ca, certFile: /c, keyFile: /k}}"},
		{name: "flag alone (a vCluster values file)", yaml: "migrateFromDeployedEtcd: true"},
		{name: "endpoints without flag", yaml: "migrateFrom: {endpoints: [http://a:2379]}", want: "migrateFromDeployedEtcd is false"},
		{name: "two sources", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: [http://a:2379], sqlite: /s.db}", want: "use one source"},
		{name: "not a URL", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: [a:2379]}", want: `migrateFrom.endpoints[0] "a:2379"`},
		{name: "credentials in URL", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: ['http://u:p@a:2379']}", want: "credentials in the URL"},
		{name: "cert without key", yaml: "migrateFromDeployedEtcd: true\nmigrateFrom: {endpoints: [https://a:2379], tls: {certFile: /c}}", want: "set both or neither"},
		{name: "unknown tls key", yaml: "migrateFrom: {tls: {ca: /c}}", want: `unknown key "migrateFrom.tls.ca"`},
		{name: "upgrade restore", yaml: "upgrade: {oldData: restore}"},
		{name: "upgrade refuse", yaml: "upgrade: {oldData: refuse}"},
		{name: "upgrade unknown", yaml: "upgrade: {oldData: inplace}", want: `upgrade.oldData "inplace": want restore or refuse`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			var msgs []string
			if err != nil {
				msgs = append(msgs, err.Error())
			} else {
				for _, e := range append(c.validateDeployedEtcd(), c.Upgrade.validate()...) {
					msgs = append(msgs, e.Error())
				}
			}
			got := strings.Join(msgs, "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
