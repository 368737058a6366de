//! koidc's integration tests: one test binary that runs the real `koidc` binary against a real
//! Dex (behind a counting proxy), a real Keycloak, a fake browser, kubectl and an in-process HTTPS
//! endpoint.
//!
//! Needs the pinned Dex, kubectl and Keycloak that `tests/e2e/deps.sh` installs; `./tests/run.sh`
//! installs them and exports `KOIDC_E2E_DEX` / `KOIDC_E2E_KUBECTL` / `KOIDC_E2E_KEYCLOAK`. Without them the tests that need them fail
//! with a message saying so (they never skip silently).
//!
//! Harness modules: [`support`] (running processes, parsing output, leak checks), [`dex`],
//! [`proxy`], [`apiserver`], [`browser`], [`kubeconfig`], [`lab`] (all of them wired together for
//! one test), [`keycloak`] (one Keycloak server for the whole run, and its tests), and the stand-ins for services that cannot be had here ([`stub_idp`],
//! [`fake_github`], [`fake_actions`]). Test modules are named after the behaviour they cover.

mod apiserver;
mod browser;
mod dex;
mod fake_actions;
mod fake_github;
mod keycloak;
mod kube;
mod kubeconfig;
mod lab;
mod proxy;
mod stub_idp;
mod support;

mod audiences;
mod audit;
mod device;
mod doctor;
mod exec_info;
mod forged_tokens;
mod github;
mod hostile;
mod keyring;
mod kubectl;
mod login;
mod logout;
mod networks;
mod okta;
mod options;
mod parallel;
mod process;
mod profiles;
mod rbac_e2e;
mod setup_cmd;
mod static_build;
mod token_exchange;
mod usage;
mod workload;
