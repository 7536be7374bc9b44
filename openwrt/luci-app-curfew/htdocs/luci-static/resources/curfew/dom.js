'use strict';
'require baseclass';

// What the daemon reports carries text that a child's device chose: DNS
// query names, DHCP host names, notes built from them. LuCI's E() puts a
// bare string into the page as HTML (innerHTML), so the views never hand
// it one: every value goes through these helpers, which make text nodes
// only.

function nodes(content) {
	return (Array.isArray(content) ? content : [ content ]).map(function(c) {
		if (c instanceof Node)
			return c;
		return document.createTextNode(c == null ? '' : String(c));
	});
}

return baseclass.extend({
	// el is E(tag, attrs, content) with content as text nodes.
	el: function(tag, attrs, content) {
		return E(tag, attrs || {}, nodes(content));
	},

	// duration says minutes the way the daemon and the CLI say durations:
	// 2h30m, 2h, 45m.
	duration: function(minutes) {
		var h = Math.floor(minutes / 60), m = Math.round(minutes % 60);
		if (!h)
			return m + 'm';
		return m ? h + 'h' + m + 'm' : h + 'h';
	},

	// table builds a LuCI table: a header row, then one row per entry of
	// rows (arrays of cell contents), each cell labelled with its column's
	// title (data-title) for the theme's phone layout; with no rows, one
	// row that says empty.
	table: function(titles, rows, empty) {
		var head = E('tr', { 'class': 'tr table-titles' }, titles.map(function(t) {
			return E('th', { 'class': 'th' }, nodes(t));
		}));
		var body = rows.map(function(cells) {
			return E('tr', { 'class': 'tr' }, cells.map(function(c, i) {
				return E('td', { 'class': 'td', 'data-title': titles[i] }, nodes(c));
			}));
		});
		if (!body.length)
			body = [ E('tr', { 'class': 'tr placeholder' }, [
				E('td', { 'class': 'td', 'colspan': titles.length }, [ E('em', {}, nodes(empty)) ])
			]) ];
		return E('table', { 'class': 'table' }, [ head ].concat(body));
	}
});
