# livemig packaging: `make deb`, `make rpm` (docs/packaging.md).
#
# Both build from a throw-away copy of the work tree (PKG_TMPDIR), so nothing is
# written into the tree but the packages in dist/. The version is read from
# lib/livemig/__init__.py, the one place it is set; debian/changelog and
# rpm/livemig.spec are brought in line with it in the staged copy.

# What the builds and the package checks need (the test suite installs the .deb
# and drives it with pacemaker, pcs and ocf-tester, which the main list has).
# build-essential: dpkg-checkbuilddeps requires it (build-essential:native) even
# for an Architecture: all package.
PKG_APT_PACKAGES := build-essential debhelper dh-python python3-all python3-setuptools python3-wheel \
	pybuild-plugin-pyproject python3-build python3-installer lintian rpm rpmlint man-db
EXTRA_APT_PACKAGES += $(PKG_APT_PACKAGES)

PKG_VERSION := $(shell PYTHONPATH=lib $(PYTHON) -B -c 'import livemig; print(livemig.__version__)' 2>/dev/null)
PKG_DIST    ?= $(CURDIR)/dist
PKG_TMPDIR  ?= /tmp
# lintian: no errors and no warnings; rpmlint: no errors. Set either to `true` to skip.
LINTIAN     ?= lintian --fail-on error,warning --display-info
RPMLINT     ?= rpmlint
# Build with the distribution's tools only: a python3 from pyenv or a venv earlier
# on PATH would be picked up by pybuild and the build steps.
PKG_ENV     := env PATH=/usr/sbin:/usr/bin:/sbin:/bin
# Fedora's pyproject macros stand-ins, loaded only where rpm lacks the real ones.
RPM_LOCAL_MACROS = $(if $(shell rpm --eval '%{?pyproject_wheel:yes}' 2>/dev/null),,--load=$(CURDIR)/rpm/macros.local-build)

# Copy the tree into $$stage/livemig-VERSION: no VCS data, nothing ignored by
# .gitignore, no virtualenvs, caches, earlier build output or in-tree deb builds.
define pkg-stage
	stage=$$(mktemp -d "$(PKG_TMPDIR)/livemig-pkg.XXXXXX"); \
	trap 'rm -rf "$$stage"' EXIT; \
	src="$$stage/livemig-$(PKG_VERSION)"; mkdir -p "$$src"; \
	tar -C "$(CURDIR)" -cf - --exclude-vcs --exclude-vcs-ignores \
		--exclude='./.venv*' --exclude=./dist --exclude=./build --exclude=./.pybuild \
		--exclude=__pycache__ --exclude='*.py[co]' --exclude=.mypy_cache --exclude=.ruff_cache \
		--exclude=.pytest_cache --exclude=.hypothesis --exclude='*.egg-info' \
		--exclude=./debian/livemig --exclude=./debian/.debhelper --exclude=./debian/tmp \
		--exclude=./debian/files --exclude='./debian/*.substvars' \
		--exclude=./debian/debhelper-build-stamp --exclude=./debian/build-man \
		. | tar -C "$$src" -xf -
endef

.PHONY: deb rpm packages

packages: deb rpm

deb: apt-deps
	@test -n "$(PKG_VERSION)" || { echo "no __version__ in lib/livemig/__init__.py" >&2; exit 1; }
	@set -e; $(pkg-stage); \
	cd "$$src"; \
	if [ "$$(dpkg-parsechangelog -S Version)" != "$(PKG_VERSION)" ]; then \
		echo "debian/changelog has no entry for $(PKG_VERSION): adding a snapshot entry (staged copy only)"; \
		{ printf 'livemig (%s) unstable; urgency=medium\n\n  * Snapshot build of %s.\n\n -- %s  %s\n\n' \
			"$(PKG_VERSION)" "$(PKG_VERSION)" "$$(dpkg-parsechangelog -S Maintainer)" "$$(date -R)"; \
		  cat debian/changelog; } > debian/changelog.new; \
		mv debian/changelog.new debian/changelog; \
	fi; \
	$(PKG_ENV) dpkg-buildpackage -us -uc -b; \
	cd "$$stage"; \
	$(PKG_ENV) $(LINTIAN) livemig_$(PKG_VERSION)_*.changes; \
	mkdir -p "$(PKG_DIST)"; \
	cp livemig_$(PKG_VERSION)_all.deb livemig_$(PKG_VERSION)_*.changes livemig_$(PKG_VERSION)_*.buildinfo "$(PKG_DIST)/"; \
	echo "built $(PKG_DIST)/livemig_$(PKG_VERSION)_all.deb"

rpm: apt-deps
	@test -n "$(PKG_VERSION)" || { echo "no __version__ in lib/livemig/__init__.py" >&2; exit 1; }
	@set -e; $(pkg-stage); \
	mkdir -p "$$stage"/rpmbuild/SOURCES "$$stage"/rpmbuild/SPECS; \
	tar -C "$$stage" -czf "$$stage/rpmbuild/SOURCES/livemig-$(PKG_VERSION).tar.gz" "livemig-$(PKG_VERSION)"; \
	spec="$$stage/rpmbuild/SPECS/livemig.spec"; \
	if grep -q '^Version:[[:space:]]*$(PKG_VERSION)[[:space:]]*$$' "$$src/rpm/livemig.spec"; then \
		cp "$$src/rpm/livemig.spec" "$$spec"; \
	else \
		echo "rpm/livemig.spec is not at $(PKG_VERSION): setting Version and a snapshot %changelog entry (staged copy only)"; \
		packager=$$(sed -n '/^%changelog/{n;s/^\* [A-Z][a-z][a-z] [A-Z][a-z][a-z] [ 0-9]* [0-9]* \(.*\) - .*/\1/p;q}' "$$src/rpm/livemig.spec"); \
		sed -e 's/^\(Version:[[:space:]]*\).*/\1$(PKG_VERSION)/' \
		    -e "/^%changelog/a * $$(LC_ALL=C date -u '+%a %b %d %Y') $$packager - $(PKG_VERSION)-1\\n- Snapshot build of $(PKG_VERSION)\\n" \
		    "$$src/rpm/livemig.spec" > "$$spec"; \
	fi; \
	$(PKG_ENV) rpmbuild -ba --nodeps --define "_topdir $$stage/rpmbuild" $(RPM_LOCAL_MACROS) \
		"$$spec"; \
	$(PKG_ENV) $(RPMLINT) -r "$$src/rpm/livemig.rpmlintrc" "$$stage"/rpmbuild/RPMS/noarch/livemig-$(PKG_VERSION)-*.noarch.rpm \
		"$$stage"/rpmbuild/SRPMS/livemig-$(PKG_VERSION)-*.src.rpm; \
	mkdir -p "$(PKG_DIST)"; \
	cp "$$stage"/rpmbuild/RPMS/noarch/livemig-$(PKG_VERSION)-*.noarch.rpm \
		"$$stage"/rpmbuild/SRPMS/livemig-$(PKG_VERSION)-*.src.rpm "$(PKG_DIST)/"; \
	echo "built in $(PKG_DIST):" $$(cd "$(PKG_DIST)" && ls livemig-$(PKG_VERSION)-*.rpm)
