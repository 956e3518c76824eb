<?php
/**
 * Plugin Name: commentguard for Akismet
 * Description: Sends the Akismet plugin's API calls to your commentguard server instead of rest.akismet.com.
 * Version: 1.0.0
 * License: MIT
 *
 * A must-use plugin: copy this file to wp-content/mu-plugins/, then in wp-config.php set
 *
 *     define( 'COMMENTGUARD_AKISMET_URL', 'https://commentguard.example.org' );
 *
 * and enter an Akismet-shaped commentguard key (12 hex digits, from
 * `commentguard keys create --name my-blog --akismet`) in Settings → Akismet Anti-Spam →
 * "Manually enter an API key". Nothing else in the Akismet plugin changes: it still builds its
 * requests for rest.akismet.com, and this filter sends each of them to commentguard (same
 * method, path, query, body and headers) and hands the answer back as if Akismet had given it.
 *
 * Tested with Debian 12's WordPress 6.1 and the Akismet plugin 5.0.2 it ships
 * (tests/service/akismet/test_akismet_wordpress.py in the commentguard repository).
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Whether a request is meant for the Akismet API: the host itself, the older
 * "<key>.rest.akismet.com" form, or an IP address with "Host: rest.akismet.com" (the Akismet
 * plugin's connectivity check calls the API's IP addresses directly).
 *
 * @param string $host        The URL's host, lower case.
 * @param string $header_host The request's Host header, lower case ('' if none).
 * @return bool
 */
function commentguard_akismet_is_akismet_host( $host, $header_host ) {
	$api = 'rest.akismet.com';
	foreach ( array( $host, $header_host ) as $name ) {
		if ( $api === $name || substr( $name, -strlen( '.' . $api ) ) === '.' . $api ) {
			return true;
		}
	}
	return false;
}

/**
 * Re-issue a request for rest.akismet.com to COMMENTGUARD_AKISMET_URL.
 *
 * @param false|array|WP_Error $response    A preemptive return value (false: not preempted yet).
 * @param array                $parsed_args The request's arguments.
 * @param string               $url         The request's URL.
 * @return false|array|WP_Error
 */
function commentguard_akismet_reroute( $response, $parsed_args, $url ) {
	if ( false !== $response || ! defined( 'COMMENTGUARD_AKISMET_URL' ) || ! COMMENTGUARD_AKISMET_URL ) {
		return $response;
	}
	$parts = wp_parse_url( $url );
	if ( ! is_array( $parts ) || empty( $parts['host'] ) ) {
		return $response;
	}

	$headers     = isset( $parsed_args['headers'] ) && is_array( $parsed_args['headers'] ) ? $parsed_args['headers'] : array();
	$header_host = '';
	foreach ( $headers as $name => $value ) {
		if ( 'host' === strtolower( $name ) ) {
			$header_host = strtolower( trim( (string) $value ) );
			unset( $headers[ $name ] ); // The new request names commentguard's host, not Akismet's.
		}
	}
	$host = strtolower( $parts['host'] );
	if ( ! commentguard_akismet_is_akismet_host( $host, $header_host ) ) {
		return $response;
	}

	// The older sub-domain form carries the key in the host name: move it into the body, which
	// commentguard reads first (its host name does not start with the key).
	foreach ( array( $host, $header_host ) as $name ) {
		$suffix = '.rest.akismet.com';
		if ( strlen( $name ) > strlen( $suffix ) && substr( $name, -strlen( $suffix ) ) === $suffix ) {
			$key  = substr( $name, 0, -strlen( $suffix ) );
			$body = isset( $parsed_args['body'] ) ? $parsed_args['body'] : '';
			if ( is_array( $body ) && ! isset( $body['api_key'] ) && ! isset( $body['key'] ) ) {
				$body['api_key'] = $key;
			} elseif ( is_string( $body ) && false === strpos( $body, 'api_key=' ) && false === strpos( $body, 'key=' ) ) {
				$body .= ( '' === $body ? '' : '&' ) . 'api_key=' . rawurlencode( $key );
			}
			$parsed_args['body'] = $body;
			break;
		}
	}

	$target = untrailingslashit( COMMENTGUARD_AKISMET_URL )
		. ( isset( $parts['path'] ) ? $parts['path'] : '/' )
		. ( isset( $parts['query'] ) ? '?' . $parts['query'] : '' );
	$parsed_args['headers'] = $headers;

	// The target is not rest.akismet.com, so this filter lets the new request through.
	return wp_remote_request( $target, $parsed_args );
}

add_filter( 'pre_http_request', 'commentguard_akismet_reroute', 10, 3 );
