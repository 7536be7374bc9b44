'use strict';
'require view';
'require rpc';
'require ui';
'require curfew.dom as dom';

// Usage history and the DNS log, as the daemon records them. Query names
// are whatever a child's device asked for: they reach the page as text
// only (curfew.dom).

var callUsage = rpc.declare({ object: 'curfew', method: 'usage', params: [ 'target', 'days' ], expect: { result: [] } });
var callLog = rpc.declare({ object: 'curfew', method: 'log', params: [ 'target', 'limit' ], expect: { result: [] } });

// chart draws a profile's online minutes of the last days as bars, in
// inline SVG: no external libraries.
function chart(profile, days) {
	var w = 420, h = 140, pad = 24, bw = (w - 2 * pad) / Math.max(days.length, 1);
	var max = 60;
	days.forEach(function(d) { max = Math.max(max, d.profiles[profile] || 0); });
	var ns = 'http://www.w3.org/2000/svg';
	var svg = document.createElementNS(ns, 'svg');
	svg.setAttribute('width', w);
	svg.setAttribute('height', h);
	svg.setAttribute('role', 'img');
	svg.setAttribute('aria-label', _('Online minutes per day for %s').format(profile));
	days.slice().reverse().forEach(function(d, i) {
		var mins = d.profiles[profile] || 0;
		var bh = (h - 2 * pad) * mins / max;
		var rect = document.createElementNS(ns, 'rect');
		rect.setAttribute('x', pad + i * bw + 4);
		rect.setAttribute('y', h - pad - bh);
		rect.setAttribute('width', bw - 8);
		rect.setAttribute('height', bh);
		rect.setAttribute('fill', '#5b9bd5');
		var title = document.createElementNS(ns, 'title');
		title.textContent = _('%s: %s online').format(d.date, dom.duration(mins));
		rect.appendChild(title);
		svg.appendChild(rect);
		var label = document.createElementNS(ns, 'text');
		label.setAttribute('x', pad + i * bw + bw / 2);
		label.setAttribute('y', h - 6);
		label.setAttribute('text-anchor', 'middle');
		label.setAttribute('font-size', '10');
		label.textContent = d.date.slice(5);
		svg.appendChild(label);
	});
	return svg;
}

function totals(days) {
	var rows = [];
	days.forEach(function(d) {
		Object.keys(d.devices).sort().forEach(function(mac) {
			var u = d.devices[mac];
			rows.push([ d.date, u.name || mac, dom.duration(u.minutes), u.blocked, u.bypass_attempts, u.flows_dropped || 0 ]);
		});
	});
	return dom.table([ _('Day'), _('Device'), _('Online'), _('Blocked'), _('Bypass attempts'), _('Connections dropped') ], rows, _('No usage recorded yet.'));
}

function logTable(entries, filter) {
	var rows = [];
	entries.slice().reverse().forEach(function(e) {
		var text = [ e.device, e.mac, e.name, e.verdict, e.by ].join(' ');
		if (filter && text.toLowerCase().indexOf(filter.toLowerCase()) < 0)
			return;
		rows.push([
			new Date(e.time).toLocaleTimeString(),
			e.device || e.mac,
			e.name + ' ' + e.type,
			e.by ? e.verdict + ' (' + e.by + ')' : e.verdict
		]);
	});
	return dom.table([ _('Time'), _('Device'), _('Name'), _('Verdict') ], rows, _('No DNS queries recorded.'));
}

return view.extend({
	load: function() {
		return Promise.all([ callUsage('', 7), callLog('', 500) ]);
	},

	render: function(data) {
		var days = data[0] || [], entries = data[1] || [];
		var profiles = {};
		days.forEach(function(d) { Object.keys(d.profiles).forEach(function(p) { profiles[p] = true; }); });
		var logBox = E('div', {}, [ logTable(entries, '') ]);
		var filter = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'placeholder': _('Filter: device, name, verdict'),
			'keyup': function(ev) { logBox.replaceChildren(logTable(entries, ev.target.value)); } });
		var charts = Object.keys(profiles).sort().map(function(p) {
			return E('div', { 'class': 'cbi-section' }, [ dom.el('h4', {}, p), chart(p, days) ]);
		});
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('Activity')),
			E('div', { 'class': 'cbi-map-descr' }, _('Screen time of the last seven days, blocked and bypass attempts, and recent DNS queries.')),
			E('h3', _('Online minutes')),
			charts.length ? dom.el('div', {}, charts) : E('p', _('No usage recorded yet.')),
			E('h3', _('Per device')),
			totals(days),
			E('h3', _('Recent DNS queries')),
			filter,
			logBox
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
